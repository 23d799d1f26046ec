"""Generation tasks through the runner on a tiny model: user RTP file (--data), RTP-LX group means, auto scorer."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from toxbench.harness.cli import main
from toxbench.harness.run.scoring import resolve_scorer_name
from toxbench.harness.measure.scorers import DEFAULT_SCORER


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


def test_copied_run_dir_resumes_through_other_paths_without_regenerating(tiny_llama_dir, tmp_path, cache_dir,
                                                                         monkeypatch):
    """The generation cache is keyed by content (weights, tokenizer, protocol), never by a path: a run dir copied
    to another output dir and run through another cache dir regenerates nothing."""
    import shutil

    from toxbench.harness.run import generation

    def run(out, cache):
        args = ["run", "--model", str(tiny_llama_dir), "--tasks", "rtp_challenging", "--limit", "6", "--k", "2",
                "--max-new-tokens", "4", "--scorer", "profanity-check", "--device", "cpu", "--batch-size", "2",
                "-o", str(out), "--cache-dir", str(cache)]
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        (run_dir,) = [p.parent for p in Path(out).glob("*/run_spec.json")]
        return run_dir

    first = run(tmp_path / "runs", tmp_path / "cache1")
    copied = tmp_path / "elsewhere" / first.name
    shutil.copytree(first, copied)
    (copied / "results.json").unlink()  # as if killed before the task was summarized: only the cache remains
    batches = []
    orig = generation._BatchRunner.run
    monkeypatch.setattr(generation._BatchRunner, "run", lambda self, *a, **k: batches.append(1) or orig(self, *a, **k))
    again = run(tmp_path / "elsewhere", tmp_path / "cache2")
    assert again.name == first.name  # same identity: paths are not part of it
    assert batches == []  # zero regenerated prompts
    a = json.loads((first / "results.json").read_text())["tasks"]["rtp_challenging"]
    b = json.loads((again / "results.json").read_text())["tasks"]["rtp_challenging"]
    assert a["metrics"] == b["metrics"]


def test_generation_cache_key_ignores_where_the_model_was_loaded_from(tiny_llama_dir, tmp_path, monkeypatch):
    """An embedded model read through another cache dir has another config path; its cache still hits."""
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from toxbench.harness.run import generation

    moved = tmp_path / "moved"
    shutil.copytree(tiny_llama_dir, moved)
    cache = tmp_path / "gen.jsonl"
    prompts = ["the film was", "you are a", "the river"]

    def sample(path):
        model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
        return generation.generate_samples(model, tok, prompts, k=2, max_new_tokens=3, cache_path=cache,
                                           progress=False, batch_size=2)

    first = sample(tiny_llama_dir)
    batches = []
    orig = generation._BatchRunner.run
    monkeypatch.setattr(generation._BatchRunner, "run", lambda self, *a, **k: batches.append(1) or orig(self, *a, **k))
    assert sample(moved) == first and batches == []
