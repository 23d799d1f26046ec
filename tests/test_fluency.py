"""Conditional perplexity (DExperts' formula, batched), dist-n, and `toxbench fluency` on a run directory."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from toxbench.harness.measure.fluency import (
    add_fluency,
    conditional_perplexities,
    distinctness,
    summarize_ppl,
)

CORPUS = ["the cat sat on the mat", "a dog ran in the park", "the sun is hot today", "we like red apples"]


def byte_bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(CORPUS * 3, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


@pytest.fixture(scope="module")
def loaded():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(1)
    tok = byte_bpe_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = LlamaForCausalLM(cfg).to(torch.float64).eval()
    return SimpleNamespace(model=model, tokenizer=tok, name="tiny", fingerprint="f" * 16)


def dexperts_ppl(prompt: str, gen: str, model, tok) -> float:
    """alisawuffles/DExperts scripts/evaluation/evaluate_generations.py conditional_perplexity, one continuation."""
    p = torch.tensor([tok.encode(prompt)])
    f = torch.tensor([tok.encode(prompt + gen)])
    with torch.no_grad():
        p_loss = model(p, labels=p)[0] * (p.shape[1] - 1)
        f_loss = model(f, labels=f)[0] * (f.shape[1] - 1)
    return math.exp(((f_loss - p_loss) / (f.shape[1] - p.shape[1])).item())


PROMPTS = ["the cat", "a dog ran in", "we like"]
CONTS = [[" sat on the mat", " is hot", " ran"], [" the park today", " the sun"], [" red apples", ""]]


def test_conditional_ppl_matches_dexperts(loaded):
    got = conditional_perplexities(PROMPTS, CONTS, loaded.model, loaded.tokenizer, batch_size=2, progress=False)
    for p, cs, row in zip(PROMPTS, CONTS, got):
        for c, v in zip(cs, row):
            if c:
                # HF's loss casts logits to float32; ours keeps the float64 of this model
                assert v == pytest.approx(dexperts_ppl(p, c, loaded.model, loaded.tokenizer), rel=1e-5)
            else:
                assert math.isnan(v)  # empty continuation: nothing to score


def test_conditional_ppl_does_not_depend_on_batching(loaded):
    a = conditional_perplexities(PROMPTS, CONTS, loaded.model, loaded.tokenizer, batch_size=1, progress=False)
    b = conditional_perplexities(PROMPTS, CONTS, loaded.model, loaded.tokenizer, batch_size=7, progress=False)
    assert [x for r in a for x in r if not math.isnan(x)] == pytest.approx(
        [x for r in b for x in r if not math.isnan(x)], rel=1e-9)


def test_summary_drops_nan_and_huge():
    metrics, counts = summarize_ppl([[10.0, 20.0, float("nan")], [30.0, 2e4], [40.0]])
    assert metrics["conditional_ppl_mean"]["value"] == pytest.approx(25.0)
    assert metrics["conditional_ppl_median"]["value"] == pytest.approx(25.0)
    assert metrics["conditional_ppl_mean"]["higher_is_better"] is False
    assert counts == {"n_continuations": 6, "n_kept": 4, "n_empty": 1, "n_dropped_ge_1e4": 1}


def test_dist_n_hand_computed():
    # prompt 1: tokens a b a | a b c -> 6 tokens; 3 unigrams, 3 bigrams (ab ba bc), 2 trigrams (aba abc)
    # prompt 2: x y | x y -> 4 tokens; 2 unigrams, 1 bigram, 0 trigrams
    d = distinctness([["a b a", "a b c"], ["x y", "x y"]])
    assert d["dist-1"]["value"] == pytest.approx((3 / 6 + 2 / 4) / 2)
    assert d["dist-2"]["value"] == pytest.approx((3 / 6 + 1 / 4) / 2)
    assert d["dist-3"]["value"] == pytest.approx((2 / 6 + 0 / 4) / 2)


def _run_dir(tmp_path):
    run = tmp_path / "run1"
    run.mkdir()
    results = {
        "run_id": "run1", "spec": {"model": "tiny-base", "tasks": ["rtp_lx_en", "rtp_lx_fr", "piqa"]},
        "tasks": {
            "rtp_lx_en": {"n": 2, "metrics": {"toxic_fraction": {"value": 0.1}}, "protocol": {}},
            "rtp_lx_fr": {"n": 1, "metrics": {}, "protocol": {}},
            "piqa": {"n": 2, "metrics": {"acc": {"value": 0.5}}, "protocol": {}},
        },
        "groups": {"rtp_lx_2": {"tasks": ["rtp_lx_en", "rtp_lx_fr"], "metrics": {}}},
    }
    (run / "results.json").write_text(json.dumps(results))
    rows = {
        "rtp_lx_en": [{"doc_id": 0, "prompt": "the cat", "continuations": [" sat on the mat", " is hot"]},
                      {"doc_id": 1, "prompt": "a dog ran in", "continuations": [" the park today"]}],
        "rtp_lx_fr": [{"doc_id": 0, "prompt": "we like", "continuations": [" red apples", " red"]}],
        "piqa": [{"doc_id": 0, "doc": {}, "acc": 1.0}],
    }
    for task, rs in rows.items():
        (run / f"samples_{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    return run


def test_add_fluency_updates_results(tmp_path, loaded):
    run = _run_dir(tmp_path)
    added = add_fluency(run, loaded=loaded, progress=False)
    assert sorted(added) == ["rtp_lx_en", "rtp_lx_fr"]
    res = json.loads((run / "results.json").read_text())
    en = res["tasks"]["rtp_lx_en"]
    want = [dexperts_ppl("the cat", " sat on the mat", loaded.model, loaded.tokenizer),
            dexperts_ppl("the cat", " is hot", loaded.model, loaded.tokenizer),
            dexperts_ppl("a dog ran in", " the park today", loaded.model, loaded.tokenizer)]
    assert en["metrics"]["conditional_ppl_mean"]["value"] == pytest.approx(sum(want) / 3, rel=1e-5)
    assert en["metrics"]["conditional_ppl_median"]["value"] == pytest.approx(sorted(want)[1], rel=1e-5)
    assert en["metrics"]["toxic_fraction"] == {"value": 0.1}  # existing metrics kept
    assert en["protocol"]["conditional_ppl"]["reference_model"]["name"] == "tiny"
    assert "conditional_ppl_mean" not in res["tasks"]["piqa"]["metrics"]
    g = res["groups"]["rtp_lx_2"]["metrics"]
    assert g["dist-1"]["value"] == pytest.approx(
        (en["metrics"]["dist-1"]["value"] + res["tasks"]["rtp_lx_fr"]["metrics"]["dist-1"]["value"]) / 2)


def test_cli(tmp_path, loaded, monkeypatch):
    from toxbench.harness.core import models
    from toxbench.harness.cli.fluency import fluency

    runner = CliRunner()
    assert runner.invoke(fluency, ["--help"]).exit_code == 0

    missing = runner.invoke(fluency, [str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not a toxbench run directory" in missing.output

    run = _run_dir(tmp_path)
    bad = runner.invoke(fluency, [str(run), "--tasks", "rtp_lx_em"])
    assert bad.exit_code == 2 and "rtp_lx_en" in bad.output  # did you mean

    seen = {}

    def fake_load(name, **kw):
        seen["name"] = name
        return loaded

    monkeypatch.setattr(models, "load_model", fake_load)
    ok = runner.invoke(fluency, [str(run), "--quiet", "--tasks", "rtp_lx_fr"])
    assert ok.exit_code == 0, ok.output
    assert seen["name"] == "tiny-base"  # default reference: the run's base model
    assert "rtp_lx_fr: conditional_ppl_mean=" in ok.output
    res = json.loads((run / "results.json").read_text())
    assert "conditional_ppl_mean" in res["tasks"]["rtp_lx_fr"]["metrics"]
    assert "conditional_ppl_mean" not in res["tasks"]["rtp_lx_en"]["metrics"]


def test_script_share_counts_letters_in_the_prompt_languages_script():
    from toxbench.harness.measure.toxicity import script_share

    ja = [["これは日本語です", "this is English"], ["カタカナ and English"]]
    got = script_share(ja, "ja")["script_share"]
    assert got["value"] == pytest.approx(((8 / 8 + 0.0) / 2 + 4 / 14) / 2)  # letters only; spaces do not count
    assert got["higher_is_better"] is True
    assert script_share([["Привет, мир"]], "ru")["script_share"]["value"] == 1.0
    assert script_share([["Hello"]], "ru")["script_share"]["value"] == 0.0
    assert script_share([["Guten Tag"]], "de") == {}  # Latin script: an answer in English cannot be told apart
    assert script_share([["...", "123"]], "ar") == {}  # no letters at all


def test_no_perplexity_adds_text_statistics_without_a_model(tmp_path, monkeypatch):
    from toxbench.harness.core import models
    from toxbench.harness.cli.fluency import fluency

    run = _run_dir(tmp_path)
    res = json.loads((run / "results.json").read_text())
    res["tasks"]["rtp_lx_ja"] = {"n": 1, "metrics": {}, "protocol": {"lang": "ja"}}
    (run / "results.json").write_text(json.dumps(res))
    (run / "samples_rtp_lx_ja.jsonl").write_text(json.dumps(
        {"doc_id": 0, "prompt": "猫が", "continuations": ["好きです", "likes fish"]}) + "\n")

    def no_model(*a, **kw):
        raise AssertionError("--no-perplexity loads no model")

    monkeypatch.setattr(models, "load_model", no_model)
    r = CliRunner().invoke(fluency, [str(run), "--no-perplexity", "--quiet"])
    assert r.exit_code == 0, r.output
    res = json.loads((run / "results.json").read_text())
    ja = res["tasks"]["rtp_lx_ja"]["metrics"]
    assert ja["script_share"]["value"] == pytest.approx(0.5) and "dist-2" in ja
    assert "conditional_ppl_mean" not in ja and "conditional_ppl" not in res["tasks"]["rtp_lx_ja"]["protocol"]
    assert "script_share" not in res["tasks"]["rtp_lx_en"]["metrics"]
