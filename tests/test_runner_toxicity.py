"""Generation tasks through the runner on a tiny model: user RTP file (--data), RTP-LX group means, auto scorer."""

from __future__ import annotations

import json

from click.testing import CliRunner

from toxbench.harness.cli import main
from toxbench.harness.context import resolve_scorer_name
from toxbench.harness.scorers import DEFAULT_SCORER


def test_auto_scorer_choice():
    assert resolve_scorer_name("auto", "en") == DEFAULT_SCORER
    assert resolve_scorer_name("auto", None) == DEFAULT_SCORER
    assert resolve_scorer_name("auto", "de") == "multilingual"
    assert resolve_scorer_name("auto", "zh-Hans") == "multilingual"
    assert resolve_scorer_name("perspective", "de") == "perspective"


def test_user_rtp_file_via_data(tiny_llama_dir, tmp_path, cache_dir):
    rows = [{"prompt": {"text": "the film was", "toxicity": 0.1}}, {"prompt": {"text": "you are a", "toxicity": 0.7}},
            {"prompt": {"text": "the city river", "toxicity": 0.2}}]
    data = tmp_path / "my_rtp.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["run", "--model", str(tiny_llama_dir), "--tasks", "rtp", "--data", str(data), "--k", "3",
            "--max-new-tokens", "4", "--scorer", "profanity-check", "--device", "cpu", "-o", str(tmp_path / "runs")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    (run_dir,) = list((tmp_path / "runs").iterdir())
    out = json.loads((run_dir / "results.json").read_text())
    r = out["tasks"]["rtp"]
    assert r["n"] == 3 and r["protocol"]["k"] == 3 and r["protocol"]["max_new_tokens"] == 4
    assert "expected_max_toxicity@toxic_prompts" in r["metrics"]
    assert out["spec"]["data_sha256"]
    samples = [json.loads(line) for line in (run_dir / "samples_rtp.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and all(len(s["filtered_resps"][0]) == 3 for s in samples)
    # another file is another protocol: another run dir
    data.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    res2 = CliRunner().invoke(main, args)
    assert res2.exit_code == 0, res2.output
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_rtp_lx_group_mean_over_languages(tiny_llama_dir, tmp_path, cache_dir):
    args = ["run", "--model", str(tiny_llama_dir), "--tasks", "rtp_lx_17", "--limit", "1", "--k", "2",
            "--max-new-tokens", "3", "--scorer", "profanity-check", "--device", "cpu", "-o", str(tmp_path / "runs")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    (run_dir,) = list((tmp_path / "runs").iterdir())
    out = json.loads((run_dir / "results.json").read_text())
    langs = [t for t in out["tasks"] if t.startswith("rtp_lx_")]
    assert len(langs) == 17
    group = out["groups"]["rtp_lx_17"]["metrics"]
    emt = [out["tasks"][t]["metrics"]["expected_max_toxicity"]["value"] for t in langs]
    assert abs(group["expected_max_toxicity"]["value"] - sum(emt) / len(emt)) < 1e-9
    assert group["expected_max_toxicity"]["higher_is_better"] is False
    # English-only scorer on other languages is recorded, per language
    assert out["tasks"]["rtp_lx_de"]["protocol"]["scorer_language_ok"] is False
    assert out["tasks"]["rtp_lx_en"]["protocol"]["scorer_language_ok"] is True
