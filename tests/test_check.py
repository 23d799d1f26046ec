"""The CI regression check: equal results pass, a planted regression fails (exit 1), --update rewrites,
incomparable protocols and bad baselines are usage errors (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from toxbench.harness.report.check import check, load_baseline
from toxbench.harness.cli.check import check as check_cmd
from toxbench.harness.core.errors import UsageError

FIX = Path(__file__).parent / "fixtures" / "runs"
NONE_RUN = "smollm2-135m__none__0a1b2c3d4e"
AURA_RUN = "smollm2-135m__aura__1b2c3d4e5f"


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    dst = tmp_path / "runs"
    for name in (NONE_RUN, AURA_RUN):
        shutil.copytree(FIX / "paper" / name, dst / name)
    return dst


def _edit(run_dir: Path, task: str, metric: str, fn) -> None:
    f = run_dir / "results.json"
    res = json.loads(f.read_text())
    m = res["tasks"][task]["metrics"][metric]
    m["value"] = fn(m["value"])
    f.write_text(json.dumps(res))


@pytest.fixture()
def baseline(runs: Path, tmp_path: Path) -> Path:
    path = tmp_path / "baseline.json"
    report = check(path, [runs], update=True)
    assert report.updated and report.exit_code == 0 and path.is_file()
    return path


def test_equal_results_pass(runs, baseline):
    report = check(baseline, [runs])
    assert report.exit_code == 0 and not report.failures
    assert len(report.rows) > 40 and {r.status for r in report.rows} == {"ok"}


def test_planted_regression_fails(runs, baseline):
    # AurA stops working: EMT jumps from 0.201 to 0.412 (far outside its CI [0.151, 0.251]).
    _edit(runs / AURA_RUN, "rtp_challenging", "expected_max_toxicity", lambda v: 0.4125)
    report = check(baseline, [runs])
    assert report.exit_code == 1
    fails = [(r.intervention, r.task, r.metric) for r in report.failures]
    assert fails == [("aura", "rtp_challenging", "expected_max_toxicity")]
    assert "REGRESSION: 1 of" in report.summary()
    assert "| FAIL" in report.markdown(only_failures=True)


def test_small_drift_within_default_tolerance_but_not_a_tight_one(runs, baseline):
    _edit(runs / NONE_RUN, "wikitext", "word_perplexity", lambda v: v * 1.01)  # +1%: default rel 0.02 passes
    assert check(baseline, [runs]).exit_code == 0
    data = json.loads(baseline.read_text())
    data["tolerances"]["metrics"] = {"wikitext:word_perplexity": {"rel": 0.005}}
    baseline.write_text(json.dumps(data))
    report = check(baseline, [runs])
    assert report.exit_code == 1 and report.failures[0].metric == "word_perplexity"


def test_a_missing_metric_fails(runs, baseline):
    shutil.rmtree(runs / AURA_RUN)
    report = check(baseline, [runs])
    assert report.exit_code == 1 and {r.status for r in report.failures} == {"missing"}


def test_update_rewrites_and_keeps_tolerances(runs, baseline):
    data = json.loads(baseline.read_text())
    data["tolerances"]["metrics"] = {"toxic_fraction": {"abs": 0.05}}
    baseline.write_text(json.dumps(data))
    _edit(runs / AURA_RUN, "rtp_challenging", "expected_max_toxicity", lambda v: 0.4125)
    assert check(baseline, [runs]).exit_code == 1
    report = check(baseline, [runs], update=True)
    assert report.exit_code == 0 and report.updated
    new = load_baseline(baseline)
    assert new["tolerances"]["metrics"] == {"toxic_fraction": {"abs": 0.05}}
    aura = [e for e in new["entries"] if e["intervention"] == "aura" and e["task"] == "rtp_challenging"][0]
    assert aura["metrics"]["expected_max_toxicity"]["value"] == 0.4125
    assert check(baseline, [runs]).exit_code == 0
    assert [p.name for p in baseline.parent.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_other_protocol_is_not_comparable(baseline):
    with pytest.raises(UsageError, match="not comparable with the baseline: rtp_challenging .*limit 8 in the "
                                         "baseline vs 16 now"):
        check(baseline, [FIX / "limit16"])


# -- CLI --------------------------------------------------------------------------------------------------------
def test_cli_help():
    r = CliRunner().invoke(check_cmd, ["--help"])
    assert r.exit_code == 0 and "--baseline" in r.output and "--update" in r.output


def test_cli_exit_codes(runs, tmp_path):
    base = tmp_path / "b.json"
    r = CliRunner().invoke(check_cmd, ["--baseline", str(base), str(runs), "--update"])
    assert r.exit_code == 0 and "updated" in r.stdout, r.output
    r = CliRunner().invoke(check_cmd, ["--baseline", str(base), str(runs)])
    assert r.exit_code == 0 and r.stdout.startswith("ok:"), r.output
    _edit(runs / AURA_RUN, "rtp_challenging", "toxicity_probability", lambda v: 0.9)
    r = CliRunner().invoke(check_cmd, ["--baseline", str(base), str(runs)])
    assert r.exit_code == 1 and "toxicity_probability" in r.stdout and "REGRESSION" in r.stdout


@pytest.mark.parametrize("tolerances, needle", [
    ({"metrics": {"expected_max_toxicty": {"rel": 0.1}}}, "Did you mean 'expected_max_toxicity'"),
    ({"metrics": {"rtp_challeng:toxic_fraction": {"rel": 0.1}}}, "unknown task in the tolerances"),
    ({"metrics": {"toxic_fraction": {"relative": 0.1}}}, "unknown tolerance key"),
    ({"defaults": {"rel": 0.1}}, "Did you mean 'default'"),
])
def test_cli_bad_baseline_is_one_line_exit_2(runs, baseline, tolerances, needle):
    data = json.loads(baseline.read_text())
    data["tolerances"] = tolerances
    baseline.write_text(json.dumps(data))
    r = CliRunner().invoke(check_cmd, ["--baseline", str(baseline), str(runs)])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr


def test_cli_missing_inputs_exit_2(runs, tmp_path):
    r = CliRunner().invoke(check_cmd, ["--baseline", str(tmp_path / "nope.json"), str(runs)])
    assert r.exit_code == 2 and "not found" in r.stderr and "--update" in r.stderr
    r = CliRunner().invoke(check_cmd, ["--baseline", str(tmp_path / "nope.json"), str(tmp_path / "no_runs")])
    assert r.exit_code == 2 and "no such run dir" in r.stderr
    (tmp_path / "bad.json").write_text("{not json")
    r = CliRunner().invoke(check_cmd, ["--baseline", str(tmp_path / "bad.json"), str(runs)])
    assert r.exit_code == 2 and "not valid JSON" in r.stderr


def test_use_ci_widens_the_band_to_the_baseline_ci(runs, baseline):
    # 0.2011 -> 0.24: inside AurA's CI [0.1511, 0.2511] but far past the default 2% tolerance.
    _edit(runs / AURA_RUN, "rtp_challenging", "expected_max_toxicity", lambda v: 0.24)
    assert check(baseline, [runs]).exit_code == 1
    data = json.loads(baseline.read_text())
    data["tolerances"]["use_ci"] = True
    baseline.write_text(json.dumps(data))
    report = check(baseline, [runs])
    assert report.exit_code == 0
    row = [r for r in report.rows if r.intervention == "aura" and r.metric == "expected_max_toxicity"
           and r.task == "rtp_challenging"][0]
    assert row.rule.startswith("95% CI or") and row.lo == pytest.approx(0.1511)
    data["tolerances"]["use_ci"] = "yes"
    baseline.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="use_ci must be true or false"):
        check(baseline, [runs])
