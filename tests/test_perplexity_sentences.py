"""wiki_sentences reproduces ml-aura's per-sentence perplexity; wikitext103 loads like wikitext."""

from __future__ import annotations

import logging
import math
import statistics

import pytest
import torch

from toxbench.tasks.perplexity.sentences import sentences_dataset
from toxbench.harness.core.errors import UsageError
from toxbench.harness.core.paths import data_dir
from toxbench.tasks import TASKS_DIR

logging.getLogger("lm-eval").setLevel(logging.ERROR)

TEXTS = [
    "The cat sat on the mat. " * 40,  # > 128 tokens: truncated
    "A short line about the dog.",
    "The dog and the cat sat on a red mat near the old house by the river.",
    "The",  # one token: nothing to score (NaN, as in ml-aura)
]


def byte_bpe_tokenizer():
    """A byte-level BPE (GPT-2 / SmolLM2 style: spaces glued to the next word, offsets trimmed), built in-process."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(TEXTS * 3, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_llama(vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(cfg).to(torch.float64).eval()


def ml_aura_ppl(texts, tokenizer, model, max_length=128):
    """apple/ml-aura scripts/evaluate_toxicity.py perplexity_batch, one text at a time (no padding)."""
    out = []
    for t in texts:
        ids = tokenizer([t], add_special_tokens=False, truncation=True, max_length=max_length,
                        return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model(ids).logits.to(torch.float64)
        ce = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="none")
        out.append(float(torch.exp(ce.sum() / ce.numel())) if ce.numel() else float("nan"))
    return out


@pytest.fixture(scope="module")
def tok_model():
    torch.set_num_threads(1)
    tok = byte_bpe_tokenizer()
    return tok, tiny_llama(len(tok))


def _task(texts, tok):
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(TASKS_DIR / "perplexity" / "wiki_sentences.yaml")
    cfg["custom_dataset"] = lambda **_: sentences_dataset(texts, tok)
    return ConfigurableTask(config=cfg)


def test_matches_ml_aura(tok_model):
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM

    tok, model = tok_model
    assert len(tok(TEXTS[0])["input_ids"]) > 128 and len(tok(TEXTS[3])["input_ids"]) == 1
    task = _task(TEXTS, tok)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=2, max_length=256)
    res = evaluate(lm, {"wiki_sentences": task}, log_samples=True, verbosity="ERROR")
    got = [s["perplexity"] for s in sorted(res["samples"]["wiki_sentences"], key=lambda s: s["doc_id"])]
    want = ml_aura_ppl(TEXTS, tok, model)
    assert got[:3] == pytest.approx(want[:3], rel=1e-6)
    assert math.isnan(want[3]) and math.isnan(got[3])  # dropped from the mean
    metrics = res["results"]["wiki_sentences"]
    finite = [w for w in want if not math.isnan(w)]
    assert metrics["perplexity,none"] == pytest.approx(sum(finite) / len(finite), rel=1e-6)
    assert metrics["perplexity_median,none"] == pytest.approx(statistics.median(finite), rel=1e-6)


def test_rolling_would_differ(tok_model):
    """The check can fail: scoring the first token too (lm-eval's rolling loglikelihood) changes the numbers."""
    tok, model = tok_model
    ids = tok(TEXTS[2], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([[tok.eos_token_id, *ids]])).logits[0, :-1], -1)
    rolling = math.exp(-lp[torch.arange(len(ids)), torch.tensor(ids)].sum().item() / len(ids))
    assert rolling != pytest.approx(ml_aura_ppl([TEXTS[2]], tok, model)[0], rel=1e-3)


def test_no_tokenizer_is_a_usage_error():
    from toxbench.tasks.perplexity.sentences import wiki_sentences_dataset

    with pytest.raises(UsageError, match="tokenizer"):
        wiki_sentences_dataset("wikitext/ml_act_wikipedia_sentences/wikipedia_sentences.csv")


@pytest.mark.skipif(not data_dir(must_exist=False).is_dir(), reason="no data dir")
def test_real_files_load():
    from toxbench.tasks.perplexity.sentences import wiki_sentences_dataset
    from toxbench.tasks import load_task_dict

    from tiny import tiny_tokenizer

    ds = wiki_sentences_dataset("wikitext/ml_act_wikipedia_sentences/wikipedia_sentences.csv",
                                tokenizer=tiny_tokenizer())["test"]
    assert len(ds) == 100
    tasks = load_task_dict(["wikitext", "wikitext103"])
    w2, w103 = tasks["wikitext"], tasks["wikitext103"]
    assert len(w2.eval_docs) == len(w103.eval_docs) == 62  # same articles, two releases
    assert "<unk>" in w103.eval_docs[0]["page"] + w103.eval_docs[1]["page"]
    assert w103.config.process_results is w2.config.process_results or (
        w103.config.process_results.__code__.co_code == w2.config.process_results.__code__.co_code)
