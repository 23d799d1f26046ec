"""Suites (HELM style): a declared grid of models × interventions × tasks -> RunSpecs -> runs -> leaderboard.

A suite YAML::

    name: smoke
    out: leaderboards/smoke.md          # leaderboard written here (plots, CSV and JSON beside it)
    title: smoke                        # its heading (default "Leaderboard: NAME")
    include: [other.yaml]               # that suite's runs join this one's (a path next to this file)
    costs: [5, 10, 20]                  # matched-cost columns, % perplexity (as `toxbench leaderboard --costs`)
    settings:                           # shared RunSpec fields: seed, limit, scorer, generation, batch_size, ...
      seed: 1234
      limit: 8
      generation: {k: 4, max_new_tokens: 20}
    grids:                              # or models / interventions / tasks at the top level for one grid
      - models: [smollm2-135m]
        interventions: [none, aura, {name: aura, args: {aura.alpha: 0.5}}]
        tasks: [rtp_challenging, {name: wikitext, limit: 5}]   # per-task settings override the shared ones
        settings: {...}                 # per-grid settings override the suite's

``include`` puts another suite's runs on this suite's board: a DPO suite, whose state must be trained first, includes
the main grid so that one board holds every method, paired with the same `none` runs.

Tasks with the same effective settings share one RunSpec (one run dir, one model load); a task with its own
settings gets its own. Runs whose results.json is complete for the same spec fingerprint are skipped.

Several machines may run the same suite over a shared file system: a run another process holds (the run dir's
lock, see lock.py) is skipped at first, then waited for after the other runs, and resumed only if its holder did
not finish it, so no run is computed twice and every machine ends with the complete leaderboard.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import UsageError, did_you_mean
from ..core.io import canonical_json
from ..report.frontier import TARGET_COSTS, positive_costs
from ..report.leaderboard import build_leaderboard, write_leaderboard
from ..report.markdown import compact_summary
from ..report.plots import write_html_beside, write_plots_beside
from ..spec.lock import RunLocked, run_lock
from ..spec.rundir import RunDir
from ..spec.runspec import GenerationSettings, RunSpec
from ..spec.sampling import expand as expand_sampling
from . import runner  # runner.execute / runner.validate looked up per call: tests stand in for them
from .sweep import parse_grid_values, point_args

SUITE_KEYS = ("name", "description", "out", "title", "costs", "include", "settings", "grids", "models",
              "interventions", "tasks", "order")
GRID_KEYS = ("models", "interventions", "tasks", "settings")
#: RunSpec fields a suite may not set: they come from the grid itself.
GRID_FIELDS = ("model", "intervention", "intervention_args", "intervention_state", "tasks")
SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(RunSpec))
GEN_FIELDS = tuple(f.name for f in dataclasses.fields(GenerationSettings))
#: ``sampling`` names a sampling preset (spec/sampling.py) that the ``generation`` settings refine.
SETTING_FIELDS = (*(f for f in SPEC_FIELDS if f not in GRID_FIELDS), "sampling")


@dataclass
class Suite:
    name: str
    path: Path
    out: Path
    specs: list[RunSpec]
    order: list[str] = field(default_factory=list)
    title: str = ""  # the board's heading; default "Leaderboard: NAME"
    costs: tuple[float, ...] = TARGET_COSTS  # where the board's matched-cost tables read each curve (% perplexity)


@dataclass
class SuiteResult:
    suite: Suite
    run_dirs: list[Path]
    skipped: list[Path]  # already complete, not re-run
    ran: list[Path]
    outputs: list[Path]  # leaderboard files written


def _merge_settings(base: dict[str, Any], over: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(over, dict):
        raise UsageError(f"{where}: settings must be a mapping, not {type(over).__name__}")
    out = dict(base)
    for k, v in over.items():
        if k not in SETTING_FIELDS:
            if k in GRID_FIELDS:
                raise UsageError(f"{where}: {k!r} is set by the grid (models / interventions / tasks), not settings")
            raise did_you_mean(k, SETTING_FIELDS, f"setting in {where}:")
        if k == "generation":
            if not isinstance(v, dict):
                raise UsageError(f"{where}: generation must be a mapping of {', '.join(GEN_FIELDS)}")
            for g in v:
                if g not in GEN_FIELDS:
                    raise did_you_mean(g, GEN_FIELDS, f"generation setting in {where}:")
            v = {**(out.get("generation") or {}), **v}
        out[k] = v
    return out


def _as_list(value: Any, what: str, where: str) -> list[Any]:
    if value is None:
        raise UsageError(f"{where}: '{what}' is missing")
    items = value if isinstance(value, list) else [value]
    if not items:
        raise UsageError(f"{where}: '{what}' is empty")
    return items


Intervention = tuple[str, tuple[tuple[str, Any], ...], str | None]


def _interventions(item: Any, where: str) -> list[Intervention]:
    """One grid entry's interventions: a name, ``{name, args, state}``, or that with ``sweep: {KNOB: [values]}``
    (one intervention per value, as ``toxbench sweep``)."""
    name, args, state = _intervention(item, where)
    sweep = item.get("sweep") if isinstance(item, dict) else None
    if sweep is None:
        return [(name, args, state)]
    if not isinstance(sweep, dict) or len(sweep) != 1:
        raise UsageError(f"{where}: intervention {name!r} sweep must map one knob to its values, e.g. "
                         "sweep: {strength: [0.25, 0.5, 1]}")
    (knob, values), = sweep.items()
    raw = ",".join(str(v) for v in (values if isinstance(values, list) else [values]))
    return [(name, point_args(name, args, str(knob), v), state)
            for v in parse_grid_values(f"sweep {knob}", raw)]


def _intervention(item: Any, where: str) -> Intervention:
    if isinstance(item, str):
        return item, (), None
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        for k in item:
            if k not in ("name", "args", "state", "sweep"):
                raise did_you_mean(k, ("name", "args", "state", "sweep"), f"intervention key in {where}:")
        args = item.get("args") or {}
        if not isinstance(args, dict):
            raise UsageError(f"{where}: intervention {item['name']!r} args must be a mapping")
        state = item.get("state")
        if state is not None:  # `state: ${TOXBENCH_DPO_STATE}` or `~/...`: fitted states live outside the repo
            raw = str(state)
            state = os.path.expanduser(os.path.expandvars(raw))
            if "$" in state:
                raise UsageError(f"{where}: intervention {item['name']!r} state {raw!r} names an unset variable")
            state = str(Path(state).resolve())
        return item["name"], tuple(sorted((str(k), v) for k, v in args.items())), state
    raise UsageError(f"{where}: an intervention is a name or {{name:, args:, state:}}, not {item!r}")


def _task(item: Any, where: str) -> tuple[str, dict[str, Any]]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return item["name"], {k: v for k, v in item.items() if k != "name"}
    raise UsageError(f"{where}: a task is a name or {{name:, <settings>}}, not {item!r}")


def _spec(settings: dict[str, Any], **grid: Any) -> RunSpec:
    kw = {**settings, **grid}
    preset = kw.pop("sampling", None)
    if isinstance(kw.get("generation"), dict):
        kw["generation"] = GenerationSettings(**kw["generation"])
    kw["generation"] = expand_sampling(preset, kw.get("generation") or GenerationSettings())
    for k in ("scorer_args", "backend_options"):
        if isinstance(kw.get(k), dict):
            kw[k] = tuple(sorted(kw[k].items()))
    if isinstance(kw.get("include_paths"), (list, str)):
        kw["include_paths"] = tuple([kw["include_paths"]] if isinstance(kw["include_paths"], str)
                                    else kw["include_paths"])
    if isinstance(kw.get("shard"), list):
        kw["shard"] = tuple(kw["shard"])
    try:
        return RunSpec(**kw)
    except TypeError as e:
        raise UsageError(f"bad run settings: {e}") from None


def load_suite(path: str | Path, overrides: dict[str, Any] | None = None, _chain: tuple[Path, ...] = ()) -> Suite:
    """Parse a suite YAML into RunSpecs (nothing runs). ``overrides`` replace shared settings (``--set``)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"suite file {str(path)!r} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UsageError(f"suite {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"suite {str(path)!r} must be a mapping with models / interventions / tasks")
    for k in raw:
        if k not in SUITE_KEYS:
            raise did_you_mean(k, SUITE_KEYS, f"key in suite {str(path)!r}:")
    name = str(raw.get("name") or path.stem)
    shared = _merge_settings({}, raw.get("settings") or {}, f"suite {path.name}")
    if "grids" in raw:
        if any(k in raw for k in ("models", "interventions", "tasks")):
            raise UsageError(f"suite {path.name}: use either 'grids' or top-level models/interventions/tasks")
        grids = _as_list(raw["grids"], "grids", f"suite {path.name}")
    else:
        grids = [{k: raw.get(k) for k in ("models", "interventions", "tasks")}]
    included = _included(raw.get("include"), path, overrides, _chain)
    specs: list[RunSpec] = [sp for other in included for sp in other.specs]
    seen: set[str] = {sp.fingerprint() for sp in specs}
    for gi, grid in enumerate(grids):
        where = f"suite {path.name}, grid {gi + 1}"
        if not isinstance(grid, dict):
            raise UsageError(f"{where}: must be a mapping with models / interventions / tasks")
        for k in grid:
            if k not in GRID_KEYS:
                raise did_you_mean(k, GRID_KEYS, f"key in {where}:")
        settings = _merge_settings(shared, grid.get("settings") or {}, where)
        models = [str(m) for m in _as_list(grid.get("models"), "models", where)]
        ivs = [iv for i in _as_list(grid.get("interventions"), "interventions", where)
               for iv in _interventions(i, where)]
        # Tasks with equal effective settings share a run (one model load, one run dir).
        task_groups: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for item in _as_list(grid.get("tasks"), "tasks", where):
            tname, tset = _task(item, where)
            eff = _merge_settings(settings, tset, f"{where}, task {tname}")
            if overrides:
                eff = _merge_settings(eff, overrides, "--set")
            task_groups.setdefault(canonical_json(eff), (eff, []))[1].append(tname)
        for model in models:
            for iv, args, state in ivs:
                for eff, tasks in task_groups.values():
                    spec = _spec(eff, model=model, intervention=iv, intervention_args=args,
                                 intervention_state=state, tasks=tuple(tasks))
                    if spec.fingerprint() not in seen:
                        seen.add(spec.fingerprint())
                        specs.append(spec)
    out = Path(raw.get("out") or f"leaderboards/{name}.md")
    if overrides and overrides.get("output_dir"):  # runs moved elsewhere: the board goes with them
        out = Path(str(overrides["output_dir"])) / out.name
    order = [str(x) for x in (raw.get("order") or [])] or list(dict.fromkeys(
        [*(o for other in included for o in other.order),
         *(_intervention(i, "order")[0] for g in grids for i in (g.get("interventions") or []))]))
    return Suite(name=name, path=path, out=out, specs=specs, order=order,
                 title=str(raw.get("title") or f"Leaderboard: {name}"), costs=_costs(raw.get("costs"), path))


def _included(raw: Any, path: Path, overrides: dict[str, Any] | None, chain: tuple[Path, ...]) -> list[Suite]:
    """The suites named by ``include:`` (paths relative to ``path``'s folder), loaded with the same ``--set``."""
    if raw is None:
        return []
    here = path.resolve()
    out = []
    for item in raw if isinstance(raw, list) else [raw]:
        other = (path.parent / str(item)).resolve()
        if other == here or other in chain:
            raise UsageError(f"suite {path.name}: include {str(item)!r} leads back to {path.name} (a cycle)")
        if not other.is_file():
            raise did_you_mean(str(item), [f.name for f in path.parent.glob("*.yaml")], f"include in suite {path.name}:")
        out.append(load_suite(other, overrides, (*chain, here)))
    return out


def _costs(raw: Any, path: Path) -> tuple[float, ...]:
    """The suite's ``costs:`` (positive perplexity costs in %), as ``toxbench leaderboard --costs`` takes them."""
    if raw is None:
        return TARGET_COSTS
    costs = positive_costs(raw if isinstance(raw, list) else [raw])
    if costs is None:
        raise UsageError(f"suite {path.name}: costs {raw!r} is invalid: give positive perplexity costs in %, "
                         "e.g. costs: [5, 10, 20]")
    return costs


def is_complete(spec: RunSpec) -> Path | None:
    """The spec's run dir when its results.json is complete for this very spec, else None."""
    run = RunDir.for_spec(spec)
    try:
        res = run.load_results()
    except (OSError, UsageError):  # unreadable or damaged: not complete
        return None
    if res.get("completed") is True and res.get("fingerprint") in (None, spec.fingerprint()):
        return run.path
    return None


def run_suite(suite: Suite, force: bool = False, dry_run: bool = False, execute: Callable[..., Path] | None = None,
              log: Callable[[str], None] = print, leaderboard: bool = True, plots: bool = True) -> SuiteResult:
    """Run every spec of ``suite`` not yet complete, then write its leaderboard to ``suite.out``."""
    if execute is None:
        execute = runner.execute
        # Every name and path of every run is checked before the first (long) run starts.
        for spec in suite.specs:
            runner.validate(spec)
    run_dirs: list[Path | None] = []
    skipped, ran = [], []
    deferred: list[tuple[str, RunSpec, int]] = []
    for i, spec in enumerate(suite.specs, 1):
        head = f"[{i}/{len(suite.specs)}] {spec.model} / {spec.intervention} / {','.join(spec.tasks)}"
        done = is_complete(spec)
        if done is not None and not force:
            log(f"{head}: complete, skipped ({done})")
            skipped.append(done)
            run_dirs.append(done)
            continue
        if dry_run:
            log(f"{head}: to run -> {RunDir.for_spec(spec).path}")
            continue
        log(f"{head}: running")
        try:
            path = Path(execute(spec, force=force))
        except RunLocked as e:  # another process (maybe another machine) is on it: do the rest first
            log(f"{head}: {e}; coming back to it at the end")
            deferred.append((head, spec, len(run_dirs)))
            run_dirs.append(None)  # keeps the leaderboard in suite order
            continue
        ran.append(path)
        run_dirs.append(path)
    for head, spec, slot in deferred:
        # Wait for the other process, then resume whatever it left (nothing, when it finished): no work twice.
        # No --force here: the holder computed this run just now.
        log(f"{head}: waiting for the other process")
        with run_lock(RunDir.for_spec(spec).path, wait=True, log=log):
            pass
        done = is_complete(spec)
        if done is not None:
            log(f"{head}: completed by the other process ({done})")
            skipped.append(done)
            run_dirs[slot] = done
            continue
        path = Path(execute(spec, force=False, wait=True))
        ran.append(path)
        run_dirs[slot] = path
    outputs: list[Path] = []
    if leaderboard and not dry_run and run_dirs:
        lb = build_leaderboard(run_dirs, title=suite.title or f"Leaderboard: {suite.name}", order=suite.order,
                               warn=False, costs=suite.costs)
        outputs = write_leaderboard(lb, suite.out, csv=True, json_=True)
        pngs = write_plots_beside(lb, outputs[0]) if plots else []
        outputs += [*pngs, write_html_beside(lb, outputs[0], pngs)]
        log(compact_summary(lb))
        log(f"leaderboard: {suite.out}")
    return SuiteResult(suite, run_dirs, skipped, ran, outputs)
