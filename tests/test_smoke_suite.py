"""CI regression gate: the smoke suite on the embedded model against the committed baseline (slow).

The baseline holds on any CPU (fp32, teacher-forced metrics, tolerances from the spread measured across kernel sets
by benchmarks/gate_spread.py); and it still catches AurA being switched off.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from toxbench.harness.cli import main
from toxbench.harness.core.paths import REPO_ROOT

pytestmark = pytest.mark.slow

BASELINE = str(REPO_ROOT / "leaderboards" / "baseline.json")


def _by_intervention(runs):
    out: dict[str, dict[str, dict]] = {}
    for p in runs.iterdir():
        f = p / "results.json"
        if f.is_file():
            res = json.loads(f.read_text())
            for task in res["tasks"]:
                out.setdefault(res["spec"]["intervention"], {})[task] = f
    return out


def test_smoke_suite_matches_committed_baseline_and_catches_aura_switched_off(smollm2_cache, tmp_path):
    runs = tmp_path / "runs"
    res = CliRunner().invoke(main, ["suite", str(REPO_ROOT / "suites" / "smoke.yaml"), "--set",
                                    f"output_dir={runs}", "--out", str(tmp_path / "lb.md"), "--no-plots"])
    assert res.exit_code == 0, res.output
    ok = CliRunner().invoke(main, ["check", "--baseline", BASELINE, str(runs)])
    assert ok.exit_code == 0, ok.output
    # Plant the regression the gate exists for: AurA silently does nothing (its results = the unmitigated ones).
    files = _by_intervention(runs)
    for task, aura_file in files["aura"].items():
        none = json.loads(files["none"][task].read_text())
        aura = json.loads(aura_file.read_text())
        aura["tasks"][task]["metrics"] = none["tasks"][task]["metrics"]
        aura_file.write_text(json.dumps(aura))
    bad = CliRunner().invoke(main, ["check", "--baseline", BASELINE, str(runs)])
    assert bad.exit_code == 1, bad.output
    failed = [line for line in bad.output.splitlines() if "| FAIL" in line]
    # the teacher-forced metric (stable to ~1e-5 across kernels) catches it, not only the flaky greedy ones
    assert any("rtp_continuations_toxic" in line and "toxic_nll" in line for line in failed), bad.output
