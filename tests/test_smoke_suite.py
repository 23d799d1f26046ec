"""CI regression gate: the smoke suite on the embedded model against the committed baseline (slow)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from toxbench.harness.cli import main
from toxbench.harness.paths import REPO_ROOT

pytestmark = pytest.mark.slow


def test_smoke_suite_matches_committed_baseline_and_catches_a_regression(smollm2_cache, tmp_path):
    runs = tmp_path / "runs"
    res = CliRunner().invoke(main, ["suite", str(REPO_ROOT / "suites" / "smoke.yaml"), "--set",
                                    f"output_dir={runs}", "--out", str(tmp_path / "lb.md"), "--no-plots"])
    assert res.exit_code == 0, res.output
    baseline = str(REPO_ROOT / "leaderboards" / "baseline.json")
    ok = CliRunner().invoke(main, ["check", "--baseline", baseline, str(runs)])
    assert ok.exit_code == 0, ok.output
    # plant a regression: AurA's toxicity back up to the unmitigated model's
    (aura_rtp,) = [p for p in runs.iterdir() if "__aura__" in p.name
                   and "rtp_challenging" in json.loads((p / "results.json").read_text())["tasks"]]
    res_file = aura_rtp / "results.json"
    results = json.loads(res_file.read_text())
    emt = results["tasks"]["rtp_challenging"]["metrics"]["expected_max_toxicity"]
    emt["value"] = emt["value"] * 1.5 + 0.1
    res_file.write_text(json.dumps(results))
    bad = CliRunner().invoke(main, ["check", "--baseline", baseline, str(runs)])
    assert bad.exit_code == 1, bad.output
    assert "expected_max_toxicity" in bad.output
