"""linear-act, mean-act and steer through the CLI on a tiny model: listed, fitted once per sweep, exported."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from test_aura import write_sentences
from test_sweep import _args
from toxbench.harness.cli import main


def test_listed():
    res = CliRunner().invoke(main, ["list", "interventions"])
    assert res.exit_code == 0
    for name in ("linear-act", "mean-act", "steer"):
        assert name in res.output


@pytest.mark.parametrize("name", ["linear-act", "mean-act", "steer"])
def test_sweep_runs_every_strength_from_one_fit(tiny_llama_dir, tmp_path, cache_dir, name):
    jigsaw = write_sentences(tmp_path / "jigsaw.csv", n=8)
    args = [a if a != "aura" else name for a in _args(tiny_llama_dir, tmp_path)]
    args = [*args, "-a", f"data={jigsaw}", "--strength", "0.5,2"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 3 and sum(f"__{name}__" in r for r in runs) == 2
    states = list((cache_dir / "states").rglob(f"{name}-*.safetensors"))
    assert len(states) == 1  # fitted once, for both strengths
    specs = [json.loads((tmp_path / "runs" / r / "run_spec.json").read_text())["spec"] for r in runs if name in r]
    assert sorted(dict(s["intervention_args"])["strength"] for s in specs) == [0.5, 2.0]


def test_export_folds_mean_act_and_refuses_masked_linear_act(tiny_llama_dir, tmp_path, cache_dir):
    jigsaw = write_sentences(tmp_path / "jigsaw.csv", n=8)
    common = ["--model", str(tiny_llama_dir), "--device", "cpu", "-a", f"data={jigsaw}", "-a", "n_per_class=8"]
    for name in ("mean-act", "linear-act"):
        fit = CliRunner().invoke(main, ["fit", "-i", name, *common, "--dtype", "float32"])
        assert fit.exit_code == 0, fit.output
    ok = CliRunner().invoke(main, ["export", "-i", "mean-act", *common, "--fit-dtype", "float32", "--out", str(tmp_path / "folded")])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "folded" / "config.json").read_text())["mlp_bias"] is True
    bad = CliRunner().invoke(main, ["export", "-i", "linear-act", *common, "--fit-dtype", "float32", "--out", str(tmp_path / "no")])
    assert bad.exit_code == 2 and "quantiles=q_all" in bad.output and "Traceback" not in bad.output
    assert len(bad.output.strip().splitlines()) == 1
