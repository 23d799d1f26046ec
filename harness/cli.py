"""The `toxbench` command: a thin Click layer over the library (every command is callable from Python).

User mistakes (UsageError) print one line and exit 2, with no traceback.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from toxbench import __version__
from toxbench.harness.commands import OneLineErrorGroup
from toxbench.harness.errors import UsageError
from toxbench.harness.options import DEFAULT_SEED, intervention_options, model_options, path_options, seed_option
from toxbench.harness.scorers import DEFAULT_SCORER


class ToxbenchGroup(OneLineErrorGroup):
    """Turns UsageError (raised anywhere below) into one line on stderr and exit code 2; did-you-mean commands."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as e:
            from toxbench.harness.errors import did_you_mean

            if args and args[0] not in self.commands:
                raise click.UsageError(str(did_you_mean(args[0], self.list_commands(ctx), "command"))) from None
            raise e


def _split_commas(values: tuple[str, ...] | str | None) -> list[str]:
    if not values:
        return []
    if isinstance(values, str):
        values = (values,)
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _parse_shard(raw: str | None) -> tuple[int, int] | None:
    if not raw:
        return None
    try:
        i, n = (int(x) for x in raw.split("/"))
    except ValueError:
        raise UsageError(f"--shard {raw!r} is not I/N (e.g. 0/2)") from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"--shard {raw!r} is invalid; use I/N with 0 <= I < N")
    return (i, n)


@click.group(cls=ToxbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="toxbench")
def main() -> None:
    """Benchmark toxicity interventions on causal LMs with one protocol (lm-eval underneath).

    \b
    toxbench run --model smollm2-135m --intervention aura --tasks rtp_challenging,wikitext --limit 50
    toxbench leaderboard runs/ --out leaderboards/demo.md
    """


@main.command()
@model_options
@intervention_options
@path_options
@click.option("--tasks", "-t", multiple=True, default=("wikitext",), show_default=True,
              help="Comma-separated tasks or groups (see `toxbench list tasks`); lmeval:NAME for lm-eval's own.")
@click.option("--scorer", default="auto", show_default=True,
              help=f"Toxicity scorer (see `toxbench scorers list`); auto = {DEFAULT_SCORER} for English tasks, "
                   "multilingual for other languages.")
@click.option("--scorer-arg", "scorer_args", multiple=True, metavar="KEY=VALUE", help="Scorer option (repeatable).")
@click.option("--k", "k", type=int, default=None, help="Samples per prompt (task default: RTP 25).")
@click.option("--max-new-tokens", type=int, default=None, help="Tokens per sample (task default: RTP 20).")
@click.option("--temperature", type=float, default=None)
@click.option("--top-p", type=float, default=None)
@click.option("--top-k", type=int, default=None)
@click.option("--greedy", is_flag=True, help="Greedy decoding (do_sample=False).")
@seed_option
@click.option("--limit", type=int, default=None, help="First N documents of each task.")
@click.option("--max-length", type=int, default=None, help="Context window for loglikelihood tasks (default: the model's).")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--output-dir", "-o", default="runs", show_default=True, type=click.Path())
@click.option("--include-path", multiple=True, type=click.Path(), help="Extra folder of lm-eval task YAMLs.")
@click.option("--backend", default="hf", show_default=True, help="hf (hooks, any intervention) | vllm (exports).")
@click.option("--backend-arg", "backend_args", multiple=True, metavar="KEY=VALUE",
              help="Backend option, e.g. tensor_parallel_size=4, data_parallel_size=2 (vllm).")
@click.option("--shard", default=None, metavar="I/N", help="Evaluate every N-th document starting at I.")
@click.option("--data", "data_file", default=None, type=click.Path(),
              help="Your own data file for tasks that take one (rtp: a RealToxicityPrompts-format JSONL).")
@click.option("--force", is_flag=True, help="Recompute even if the run directory is complete.")
@click.option("--wait", is_flag=True,
              help="When another process is running the same spec, wait for it (default: refuse, naming it).")
@click.option("--allow-unfingerprinted-state", is_flag=True,
              help="Accept an --intervention-state without model_fingerprint metadata (you vouch it fits the model).")
def run(**kw: Any) -> None:
    """Evaluate MODEL under INTERVENTION on TASKS; writes/resumes runs/<run_id>/."""
    from toxbench.harness.runner import execute

    spec = build_spec(**kw)
    run_dir = execute(spec, force=kw["force"], wait=kw["wait"])
    show_results(run_dir)


def build_spec(**kw: Any):
    from toxbench.harness.paths import cache_dir, data_dir
    from toxbench.harness.spec import GenerationSettings, RunSpec
    from toxbench.interventions import parse_args

    from toxbench.harness.io import sha256_file

    data = None
    if kw.get("data_file"):
        p = Path(kw["data_file"]).expanduser()
        if not p.is_file():
            raise UsageError(f"--data file {kw['data_file']!r} " + ("is a directory, not a file" if p.is_dir()
                                                                      else "does not exist"))
        data = str(p.resolve())
    gen = GenerationSettings(k=kw.get("k"), max_new_tokens=kw.get("max_new_tokens"),
                             do_sample=False if kw.get("greedy") else None, temperature=kw.get("temperature"),
                             top_p=kw.get("top_p"), top_k=kw.get("top_k"))
    return RunSpec(
        model=kw["model"], model_revision=kw.get("revision"), dtype=kw.get("dtype", "auto"),
        intervention=kw.get("intervention", "none"), intervention_args=parse_args(kw.get("intervention_args", ())),
        intervention_state=str(Path(kw["intervention_state"]).resolve()) if kw.get("intervention_state") else None,
        tasks=tuple(_split_commas(kw.get("tasks"))), scorer=kw.get("scorer", "auto"),
        scorer_args=parse_args(kw.get("scorer_args", ())), generation=gen, seed=kw.get("seed", DEFAULT_SEED),
        limit=kw.get("limit"), max_length=kw.get("max_length"), data_dir=str(data_dir(kw.get("data_dir"))),
        include_paths=tuple(str(Path(p).resolve()) for p in kw.get("include_path", ())),
        backend=kw.get("backend", "hf"), backend_options=parse_args(kw.get("backend_args", ())), shard=_parse_shard(kw.get("shard")), batch_size=kw.get("batch_size", 16),
        device=kw.get("device", "auto"), output_dir=str(kw.get("output_dir", "runs")),
        cache_dir=str(cache_dir(kw.get("cache_dir"))), trust_remote_code=kw.get("trust_remote_code", False),
        data=data, data_sha256=sha256_file(data) if data else None, threads=kw.get("threads"),
        allow_unfingerprinted_state=bool(kw.get("allow_unfingerprinted_state")),
    )


def show_results(run_dir: Path | str) -> None:
    from toxbench.harness.store import RunDir

    rd = RunDir(Path(run_dir))
    res = rd.load_results()
    if not res:
        raise UsageError(f"{str(run_dir)!r} has no results.json yet")
    click.echo(f"run {res.get('run_id')}  (model {res['protocol']['model']['name']}, "
               f"intervention {res['protocol']['intervention']['name']}, complete={res.get('completed')})")
    for task, r in res.get("tasks", {}).items():
        parts = []
        for m, v in r["metrics"].items():
            s = f"{m}={v['value']:.4g}"
            if v.get("ci"):
                s += f" [{v['ci'][0]:.3g}, {v['ci'][1]:.3g}]"
            parts.append(s)
        click.echo(f"  {task} (n={r['n']}): " + ", ".join(parts))
    for g, r in res.get("groups", {}).items():
        click.echo(f"  {g}: " + ", ".join(f"{m}={v['value']:.4g}" for m, v in r["metrics"].items()))
    click.echo(f"  -> {rd.path}")


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print results.json as is.")
def show(run_dir: str, as_json: bool) -> None:
    """Print a run directory's results, or list the runs under a folder (status, tasks, headline metrics)."""
    from toxbench.harness.store import RunDir

    if not Path(run_dir).is_dir():
        raise UsageError(f"run directory {run_dir!r} does not exist")
    rd = RunDir(Path(run_dir))
    if not rd.results_file.is_file() and not rd.spec_file.is_file():
        list_runs(Path(run_dir), as_json)  # a folder of runs (e.g. runs/): one line per run
    elif as_json:
        click.echo(json.dumps(rd.load_results(), indent=2))
    elif not rd.results_file.is_file():
        from toxbench.harness.lock import describe_holder, live_holder

        holder = live_holder(rd.path)
        state = f"running ({describe_holder(holder)})" if holder else "no task finished yet; run it again to resume"
        raise UsageError(f"run {rd.path.name!r} has no results yet: {state}")
    else:
        show_results(run_dir)


#: the metric a run listing shows per task, first one present
HEADLINE_METRICS = ("expected_max_toxicity", "word_perplexity", "perplexity", "acc_norm", "acc", "exact_match")


def run_summary(path: Path) -> dict[str, Any]:
    """Status, tasks and headline metrics of one run dir (damaged files are reported, not raised)."""
    from toxbench.harness.lock import describe_holder, live_holder
    from toxbench.harness.store import RunDir

    rd = RunDir(path)
    out: dict[str, Any] = {"run": path.name, "path": str(path), "status": "not started", "tasks": [], "metrics": {}}
    try:
        res = rd.load_results()
        planned = rd.load_spec().tasks if rd.spec_file.is_file() else ()
    except UsageError:
        out["status"] = "damaged (unreadable JSON; `toxbench show` on it says which file)"
        return out
    done = res.get("top_level_done", [])
    out["tasks"] = list(planned or res.get("tasks", {}))
    if res.get("completed"):
        out["status"] = "complete"
    elif res or planned:
        out["status"] = f"incomplete ({len(done)}/{len(planned) or '?'} tasks)"
    holder = live_holder(path)
    if holder:
        out["status"] = f"running ({describe_holder(holder)})"
    for task, r in res.get("tasks", {}).items():
        metrics = r.get("metrics", {}) if isinstance(r, dict) else {}
        name = next((m for m in HEADLINE_METRICS if m in metrics), next(iter(metrics), None))
        if name is not None and isinstance(metrics[name], dict) and metrics[name].get("value") is not None:
            out["metrics"][task] = {name: metrics[name]["value"]}
    return out


def list_runs(folder: Path, as_json: bool = False) -> None:
    from toxbench.harness.leaderboard import find_run_dirs

    try:
        dirs = find_run_dirs([folder])
    except UsageError:
        raise UsageError(f"{str(folder)!r} is neither a run dir nor a folder of run dirs (no run_spec.json or "
                         "results.json in it or below)") from None
    rows = [run_summary(d) for d in dirs]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{len(rows)} run(s) under {folder}:")
    for r in rows:
        heads = ", ".join(f"{t} {m}={v:.4g}" for t, mv in r["metrics"].items() for m, v in mv.items())
        click.echo(f"  {r['run']}  [{r['status']}]  tasks: {','.join(r['tasks']) or '-'}"
                   + (f"  {heads}" if heads else ""))


@main.command(name="list")
@click.argument("what", type=click.Choice(["models", "interventions", "tasks", "scorers"]))
@click.option("--include-path", multiple=True, type=click.Path())
def list_(what: str, include_path: tuple[str, ...]) -> None:
    """List the names toxbench resolves."""
    if what == "models":
        from toxbench.harness.models import EMBEDDED, HUB_ALIASES

        for k, e in EMBEDDED.items():
            click.echo(f"{k}\tembedded{' (multilingual)' if e.multilingual else ''}")
        for k, v in HUB_ALIASES.items():
            click.echo(f"{k}\t{v}")
    elif what == "interventions":
        from toxbench.interventions import INTERVENTIONS

        click.echo("\n".join(INTERVENTIONS.names()))
    elif what == "tasks":
        from toxbench.tasks import task_names

        click.echo("\n".join(task_names(tuple(str(Path(p).resolve()) for p in include_path))))
    else:
        from toxbench.harness.scorers import SCORERS

        click.echo("\n".join(SCORERS.names()))


@main.command()
@model_options
@intervention_options
@path_options
@click.option("--batch-size", type=int, default=32, show_default=True)
@seed_option
@click.option("--refit", is_flag=True, help="Fit again even when a cached state exists.")
def fit(**kw: Any) -> None:
    """Fit an intervention's state on MODEL (cached; `run` then finds it) and print its path."""
    from toxbench.harness.models import load_model, resolve_device, resolve_model_source
    from toxbench.harness.paths import cache_dir, data_dir
    from toxbench.interventions import INTERVENTIONS, build, parse_args, split_names, state_files

    names = split_names(kw["intervention"])
    if not any(getattr(INTERVENTIONS.get(n), "needs_fit", False) for n in names):
        raise UsageError(f"intervention {kw['intervention']!r} has nothing to fit")
    resolve_model_source(kw["model"])
    droot, cache = data_dir(kw["data_dir"]), cache_dir(kw["cache_dir"])
    device = resolve_device(kw["device"])
    loaded = load_model(kw["model"], dtype=kw["dtype"], device=device, revision=kw["revision"], cache_dir=cache,
                        trust_remote_code=kw["trust_remote_code"])
    interv = build(kw["intervention"], parse_args(kw["intervention_args"]), model=loaded.model,
                   tokenizer=loaded.tokenizer, model_fingerprint=loaded.fingerprint, model_name=kw["model"],
                   state=kw["intervention_state"], cache_dir=cache, data_dir=droot, device=device,
                   batch_size=kw["batch_size"], seed=kw["seed"], refit=kw["refit"])
    for p in state_files(interv, cache, loaded.fingerprint):
        click.echo(str(p))
    for part in interv.parts:  # weight-space: the merged checkpoint, usable as --model DIR / --intervention-state DIR
        if part.model_override() is not None:
            click.echo(part.model_override())


# Feature commands live in their own modules (harness/commands/*); mount each one that is present.
_MOUNTS = [
    ("toxbench.harness.commands.export", "export"),
    ("toxbench.harness.commands.leaderboard", "leaderboard"),
    ("toxbench.harness.commands.leaderboard", "check"),
    ("toxbench.harness.commands.leaderboard", "suite"),
    ("toxbench.harness.commands.scorers", "scorers"),
    ("toxbench.harness.commands.fluency", "fluency"),
    ("toxbench.harness.commands.dpo", "pairs"),
    ("toxbench.harness.commands.analyze", "analyze"),
    ("toxbench.harness.commands.merge", "merge"),
]


def _mount() -> None:
    for module, attr in _MOUNTS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue
            raise
        cmd = getattr(mod, attr, None) or getattr(mod, f"{attr}_cmd", None)
        if isinstance(cmd, click.Command):
            main.add_command(cmd, name=attr)


_mount()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
