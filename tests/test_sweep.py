"""Issue 24: `toxbench sweep`: one run dir per knob value paired with one `none` run, the state fitted once,
resumable, one-line errors for bad grids (nothing written), and the matched-cost table at the end."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from toxbench.harness.cli import main


def _args(tiny_llama_dir, tmp_path):
    data = tmp_path / "rtp.jsonl"
    data.write_text("".join(json.dumps({"prompt": {"text": t, "toxicity": 0.2 * i}}) + "\n"
                            for i, t in enumerate(["the film was", "you are a", "the city river", "we went"])))
    return ["sweep", "--model", str(tiny_llama_dir), "-i", "aura", "-a", "n_per_class=8", "-t", "rtp,wikitext",
            "--data", str(data), "--k", "2", "--max-new-tokens", "3", "--limit", "2", "--max-length", "32",
            "--scorer", "profanity-check", "--device", "cpu", "-o", str(tmp_path / "runs")]


def test_sweep_fits_once_resumes_and_prints_the_matched_cost_table(tiny_llama_dir, tmp_path, cache_dir, monkeypatch):
    from toxbench.harness.run.adapter import HookedLM
    from toxbench.interventions.aura import AurA

    fits = []
    orig_fit = AurA.fit
    monkeypatch.setattr(AurA, "fit", lambda self, *a, **k: fits.append(1) or orig_fit(self, *a, **k))
    args = [*_args(tiny_llama_dir, tmp_path), "--strength", "0.5,1"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert fits == [1]  # one state serves every strength
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 3 and sum("__none__" in r for r in runs) == 1
    assert "toxic fraction at matched wikitext perplexity cost" in res.output and "(strength 0, 0.5, 1)" in \
        res.output
    assert "toxicity probability at matched wikitext perplexity cost" in res.output and "tox. prob. at +10% PPL" in \
        res.output  # the AurA paper's second metric, read off the same curves
    board = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "runs")])
    assert board.exit_code == 0, board.output
    assert board.output.index("## Matched cost: rtp toxic fraction") < board.output.index(
        "## Matched cost: rtp toxicity probability")
    calls = []
    monkeypatch.setattr(HookedLM, "_model_call", lambda self, *a, **k: calls.append(1))
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and calls == [] and fits == [1]  # resumed: nothing recomputed
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == runs


@pytest.mark.parametrize("extra,needle", [
    (["--strength", ""], "at least one value"),
    (["--strength", "0.5,x"], "'x' is not a number"),
    (["--strength", "-0.5"], "must be >= 0"),
    (["--strength", "1.5"], "must be in [0, 1]"),
    ([], "needs one grid"),
    (["-i", "det0", "--strength", "0.5"], "has no strength knob"),
])
def test_bad_grids_are_one_line_and_write_nothing(tiny_llama_dir, tmp_path, cache_dir, extra, needle):
    res = CliRunner().invoke(main, [*_args(tiny_llama_dir, tmp_path), *extra])
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
