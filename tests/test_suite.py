"""Suites: YAML grid -> RunSpecs (mock execute), skip-completed, leaderboard at the end; shipped suites parse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from toxbench.harness.cli.suite import suite as suite_cmd
from toxbench.harness.core.errors import UsageError
from toxbench.harness.spec.rundir import RunDir
from toxbench.harness.run.suite import load_suite, run_suite

REPO = Path(__file__).resolve().parent.parent
FIX = Path(__file__).parent / "fixtures" / "runs" / "paper" / "smollm2-135m__none__0a1b2c3d4e" / "results.json"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text.replace("OUT", str(tmp_path)))
    return p


GRID = """
name: t
out: OUT/lb/t.md
settings: {seed: 7, limit: 8, output_dir: OUT/runs, generation: {k: 4, max_new_tokens: 20}}
models: [smollm2-135m, gemma3-270m]
interventions: [none, aura, {name: aura, args: {alpha_scale: 0.5}}]
tasks: [rtp_challenging, rtp_nontoxic, {name: wikitext, limit: 5}]
"""


class FakeExecute:
    """Stands in for runner.execute: records the specs and writes a completed results.json from a fixture."""

    def __init__(self) -> None:
        self.calls: list = []

    def __call__(self, spec, force=False):
        self.calls.append((spec, force))
        run = RunDir.for_spec(spec)
        res = json.loads(FIX.read_text())
        res.update(run_id=run.path.name, fingerprint=spec.fingerprint(), spec=spec.to_dict(), completed=True)
        res["protocol"]["model"]["name"] = spec.model
        res["tasks"] = {t: res["tasks"].get(t, res["tasks"]["rtp_challenging"]) for t in spec.tasks}
        run.save_results(res)
        return run.path


def test_grid_expands_to_specs(tmp_path):
    s = load_suite(_write(tmp_path, GRID))
    # 2 models x 3 interventions x 2 task groups (the two RTP tasks share settings; wikitext has its own limit)
    assert len(s.specs) == 12
    first = s.specs[0]
    assert (first.model, first.intervention, first.tasks, first.limit, first.seed) == (
        "smollm2-135m", "none", ("rtp_challenging", "rtp_nontoxic"), 8, 7)
    assert first.generation.k == 4 and first.generation.max_new_tokens == 20
    wt = [sp for sp in s.specs if sp.tasks == ("wikitext",)]
    assert len(wt) == 6 and {sp.limit for sp in wt} == {5}
    assert {sp.intervention_args for sp in s.specs} == {(), (("alpha_scale", 0.5),)}
    assert len({sp.fingerprint() for sp in s.specs}) == 12
    assert s.out == tmp_path / "lb" / "t.md" and s.order == ["none", "aura"]


def test_overrides_win_over_task_settings(tmp_path):
    s = load_suite(_write(tmp_path, GRID), overrides={"limit": 2, "generation": {"k": 2}})
    assert {sp.limit for sp in s.specs} == {2}
    assert len(s.specs) == 6  # same settings everywhere now: one run per model x intervention
    assert {sp.generation.k for sp in s.specs} == {2} and {sp.generation.max_new_tokens for sp in s.specs} == {20}


def test_run_skips_completed_and_writes_leaderboard(tmp_path):
    s = load_suite(_write(tmp_path, GRID))
    fake = FakeExecute()
    res = run_suite(s, execute=fake, log=lambda m: None, plots=False)
    assert len(fake.calls) == 12 and len(res.ran) == 12 and not res.skipped
    assert (tmp_path / "lb" / "t.md").is_file() and (tmp_path / "lb" / "t.csv").is_file()
    assert "aura[alpha_scale=0.5]" in (tmp_path / "lb" / "t.md").read_text()

    again = FakeExecute()
    res = run_suite(s, execute=again, log=lambda m: None, plots=False)
    assert again.calls == [] and len(res.skipped) == 12

    forced = FakeExecute()
    run_suite(s, execute=forced, force=True, log=lambda m: None, plots=False)
    assert len(forced.calls) == 12 and all(f for _, f in forced.calls)


def test_the_board_takes_the_suites_title_and_costs(tmp_path, monkeypatch):
    """A committed board is rebuilt by its suite alone: heading and matched-cost columns come from the YAML."""
    import toxbench.harness.run.suite as suite_mod

    s = load_suite(_write(tmp_path, GRID + "title: My board\ncosts: [1, 2.5, 10]\n"))
    assert s.title == "My board" and s.costs == (1.0, 2.5, 10.0)
    assert load_suite(_write(tmp_path, GRID)).costs == (5.0, 10.0, 20.0)  # the leaderboard's default
    seen = {}
    real = suite_mod.build_leaderboard
    monkeypatch.setattr(suite_mod, "build_leaderboard", lambda *a, **kw: seen.update(kw) or real(*a, **kw))
    run_suite(s, execute=FakeExecute(), log=lambda m: None, plots=False)
    assert seen["costs"] == (1.0, 2.5, 10.0) and seen["title"] == "My board"
    assert (tmp_path / "lb" / "t.md").read_text().startswith("# My board\n")


def test_dry_run_runs_nothing(tmp_path):
    s = load_suite(_write(tmp_path, GRID))
    fake, lines = FakeExecute(), []
    res = run_suite(s, execute=fake, dry_run=True, log=lines.append)
    assert fake.calls == [] and res.outputs == [] and len(lines) == 12 and "to run" in lines[0]


@pytest.mark.parametrize("text, needle", [
    ("models: [m]\ninterventions: [none]\ntasks: [t]\nsettings: {limt: 3}\n", "Did you mean 'limit'"),
    ("models: [m]\ninterventions: [none]\ntasks: [t]\nsettings: {generation: {kk: 3}}\n", "generation setting"),
    ("models: [m]\ninterventions: [none]\n", "'tasks' is missing"),
    ("modles: [m]\n", "Did you mean 'models'"),
    ("models: [m]\ninterventions: [none]\ntasks: [t]\nsettings: {model: x}\n", "set by the grid"),
    ("models: [m\n", "not valid YAML"),
    ("models: [m]\ninterventions: [none]\ntasks: [t]\ncosts: [5, 0]\n", "costs [5, 0] is invalid"),
    ("models: [m]\ninterventions: [none]\ntasks: [t]\ncosts: ten\n", "costs 'ten' is invalid"),
])
def test_bad_suites_are_usage_errors(tmp_path, text, needle):
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        load_suite(_write(tmp_path, text))


def test_shipped_suites_parse():
    smoke = load_suite(REPO / "suites" / "smoke.yaml")
    assert {sp.intervention for sp in smoke.specs} >= {"none", "aura"}
    assert {sp.model for sp in smoke.specs} == {"smollm2-135m"} and {sp.seed for sp in smoke.specs} == {1234}
    rtp = [sp for sp in smoke.specs if "rtp_challenging" in sp.tasks]
    assert rtp and all(sp.limit == 24 and sp.generation.k == 1 and sp.generation.do_sample is False for sp in rtp)
    assert {sp.dtype for sp in smoke.specs} == {"float32"}  # the gate's baseline must hold on any CPU
    assert any("rtp_continuations_toxic" in sp.tasks for sp in smoke.specs)  # teacher-forced: stable across kernels
    for f in (REPO / "suites").glob("*.yaml"):  # no suite hard-codes bf16 (emulated, 3-5x slower on most CPUs)
        assert "bfloat16" not in f.read_text(), f
    assert all(sp.limit == 2 for sp in smoke.specs if "wikitext" in sp.tasks)
    paper = load_suite(REPO / "suites" / "paper.yaml")
    smol = {sp.intervention for sp in paper.specs if sp.model == "smollm2-135m"}
    assert smol == {"none", "preprompt", "aura", "det0", "damp", "aura+preprompt", "dpo"}
    assert {sp.intervention for sp in paper.specs if sp.model == "gemma3-270m"} == {"none", "dpo", "aura"}
    assert all(sp.limit is None for sp in paper.specs)



@pytest.mark.parametrize("main_suite, dpo_suite, env, n_none", [
    ("smollm2.yaml", "smollm2_dpo.yaml", "TOXBENCH_DPO_STATE", 5),
    ("gemma_rtp_lx_k5.yaml", "gemma_rtp_lx_k5_dpo.yaml", "TOXBENCH_DPO_STATE_GEMMA", 1),
])
def test_dpo_suite_shares_the_none_runs_of_its_main_suite(monkeypatch, tmp_path, main_suite, dpo_suite, env, n_none):
    """A DPO row is paired with the others only if its `none` runs are the very runs of the main suite."""
    monkeypatch.setenv(env, str(tmp_path))
    main, dpo = load_suite(REPO / "suites" / main_suite), load_suite(REPO / "suites" / dpo_suite)
    ids = {sp.run_id() for sp in main.specs}
    dpo_none = [sp for sp in dpo.specs if sp.intervention == "none"]
    assert len(dpo_none) == n_none and all(sp.run_id() in ids for sp in dpo_none)
    assert {sp.intervention for sp in dpo.specs} == {"none", "dpo"}
    assert {sp.intervention_state for sp in dpo.specs if sp.intervention == "dpo"} == {str(tmp_path.resolve())}

INCLUDED = """
name: extra
out: OUT/lb/all.md
title: every method
costs: [5, 10]
include: [s.yaml]
settings: {seed: 7, limit: 8, output_dir: OUT/runs, generation: {k: 4, max_new_tokens: 20}}
models: [smollm2-135m]
interventions: [none, {name: dpo, state: OUT/dpo}]
tasks: [rtp_challenging, rtp_nontoxic, {name: wikitext, limit: 5}]
"""


def test_include_puts_the_other_suites_runs_on_this_board(tmp_path):
    """A DPO suite includes the main grid: one board with every method, the shared `none` runs listed once."""
    main = load_suite(_write(tmp_path, GRID))
    (tmp_path / "extra.yaml").write_text(INCLUDED.replace("OUT", str(tmp_path)))
    both = load_suite(tmp_path / "extra.yaml")
    ids = [sp.run_id() for sp in both.specs]
    assert ids[:len(main.specs)] == [sp.run_id() for sp in main.specs] and len(ids) == len(set(ids))
    assert len(ids) == len(main.specs) + 2  # smollm2's none runs are the main suite's; dpo adds two
    assert both.order == ["none", "aura", "dpo"]
    assert (both.out, both.title, both.costs) == (tmp_path / "lb" / "all.md", "every method", (5.0, 10.0))


@pytest.mark.parametrize("include, needle", [
    ("[t.yaml]", "unknown include in suite extra.yaml: 't.yaml'. Did you mean 's.yaml'"),
    ("[extra.yaml]", "include 'extra.yaml' leads back to extra.yaml (a cycle)"),
])
def test_bad_includes_are_usage_errors(tmp_path, include, needle):
    _write(tmp_path, GRID)
    (tmp_path / "extra.yaml").write_text(INCLUDED.replace("OUT", str(tmp_path)).replace("[s.yaml]", include))
    with pytest.raises(UsageError, match=re.escape(needle)):
        load_suite(tmp_path / "extra.yaml")


def test_include_cycle_through_another_suite_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text(GRID.replace("OUT", str(tmp_path)) + "include: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text(GRID.replace("OUT", str(tmp_path)) + "include: [a.yaml]\n")
    with pytest.raises(UsageError, match="include 'a.yaml' leads back to b.yaml"):
        load_suite(tmp_path / "a.yaml")


def test_committed_smollm2_frontier_board_comes_from_the_dpo_suite(monkeypatch, tmp_path):
    """leaderboards/smollm2_frontier.md holds every method: the DPO suite writes it, the main suite never does."""
    monkeypatch.setenv("TOXBENCH_DPO_STATE", str(tmp_path))
    main = load_suite(REPO / "suites" / "smollm2_frontier.yaml")
    full = load_suite(REPO / "suites" / "smollm2_frontier_dpo.yaml")
    assert {sp.run_id() for sp in main.specs} < {sp.run_id() for sp in full.specs}
    assert {sp.intervention for sp in full.specs} - {sp.intervention for sp in main.specs} == {"dpo"}
    assert full.out == Path("leaderboards/smollm2_frontier.md") and main.out != full.out
    assert full.order[-1] == "dpo" and full.costs == main.costs and full.title == "smollm2_frontier"


# -- CLI --------------------------------------------------------------------------------------------------------
def test_cli_help():
    r = CliRunner().invoke(suite_cmd, ["--help"])
    assert r.exit_code == 0 and "--dry-run" in r.output and "--force" in r.output


def test_cli_dry_run(tmp_path, monkeypatch):
    import toxbench.harness.run.runner as runner

    monkeypatch.setattr(runner, "validate", lambda spec: None)
    r = CliRunner().invoke(suite_cmd, [str(_write(tmp_path, GRID)), "--dry-run", "--set", "limit=3"])
    assert r.exit_code == 0, r.output
    assert "12 run(s)" not in r.stderr and "6 run(s)" in r.stderr and r.stderr.count("to run") == 6


@pytest.mark.parametrize("args, needle", [
    (["nope.yaml"], "suite file 'nope.yaml' not found"),
    ([str(REPO / "suites" / "smoke.yaml"), "--set", "limit"], "is not KEY=VALUE"),
])
def test_cli_bad_input_exit_2(args, needle):
    r = CliRunner().invoke(suite_cmd, args)
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr


def test_set_output_dir_moves_the_leaderboard_with_the_runs(tmp_path):
    """Issue 27.7: `suite --set output_dir=DIR` writes the board into DIR, never into the repo's runs/."""
    from pathlib import Path

    from toxbench.harness.run.suite import load_suite

    demo = Path(__file__).parents[1] / "suites" / "demo.yaml"
    s = load_suite(demo, {"output_dir": str(tmp_path / "elsewhere")})
    assert s.out == tmp_path / "elsewhere" / "leaderboard.md"
    assert all(spec.output_dir == str(tmp_path / "elsewhere") for spec in s.specs)
    assert load_suite(demo).out == Path("runs/demo/leaderboard.md")


def test_suite_sweep_entries_expand_like_toxbench_sweep(tmp_path):
    """Issue 24: `{name: aura, sweep: {strength: [...]}}` is one run per value (strength 1 is the plain `aura` run);
    a bad grid is one line naming it."""
    from toxbench.harness.core.errors import UsageError
    from toxbench.harness.run.suite import load_suite

    f = tmp_path / "s.yaml"
    f.write_text("name: s\nmodels: [smollm2-135m]\ntasks: [rtp_challenging, wiki_sentences]\n"
                 "interventions: [none, {name: aura, sweep: {strength: [0.25, 0.5, 1]}}, "
                 "{name: det0, sweep: {k: [250, 500]}}]\n")
    specs = load_suite(f).specs
    got = [(s.intervention, dict(s.intervention_args)) for s in specs]
    assert got == [("none", {}), ("aura", {"strength": 0.25}), ("aura", {"strength": 0.5}), ("aura", {}),
                   ("det0", {"k": 250}), ("det0", {"k": 500})]
    f.write_text("name: s\nmodels: [smollm2-135m]\ntasks: [rtp_challenging]\n"
                 "interventions: [{name: aura, sweep: {strength: [0.5, x]}}]\n")
    with pytest.raises(UsageError, match="'x' is not a number"):
        load_suite(f)
