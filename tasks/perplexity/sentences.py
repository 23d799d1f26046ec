"""Per-sentence perplexity of Wikipedia texts exactly as apple/ml-aura measures it (``wiki_sentences``).

ml-aura (``scripts/evaluate_toxicity.py: perplexity_batch / measure_perplexity``) tokenises each text of
``wikipedia_sentences.csv`` (rows with ``concept == "wikipedia"``, the first ``ppl_sentences`` = 100) with
``add_special_tokens=False``, truncated to 128 tokens; scores tokens 2..n given their prefix (the first token is
context only: no BOS is added); a text's perplexity is ``exp(mean NLL)`` over those n-1 tokens; the reported value
is the NaN-ignoring mean over texts (plus the std). We add the median.

In lm-eval terms each text is one ``loglikelihood`` request: context = the text up to the end of its first token,
continuation = the rest up to the end of its 128th token, with an empty target delimiter. The split depends on the
*evaluated model's* tokenizer, so the data set is built per model: ``custom_dataset`` gets the model from the task
metadata (``toxbench_model``, which the runner passes, or the ``tokenizer`` / ``pretrained`` name lm-eval passes:
``lm_eval --model hf --model_args pretrained=NAME``) and stores each text's split in its document.

The number of scored tokens is counted the way lm-eval splits the pair (``len(enc(ctx + cont)) - len(enc(ctx))``),
so the normalisation always matches the tokens lm-eval scored.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from toxbench.harness.core.errors import UsageError
from toxbench.harness.core.models import embedded_checkpoint, resolve_model_source
from toxbench.tasks.datafiles import local_dataset, read_records

MAX_TOKENS = 128  # ml-aura's perplexity_batch(max_length=128)


def wiki_sentences_dataset(
    data_file: str | None = None,
    split: str = "test",
    concept: str = "wikipedia",
    num_sentences: int | None = 100,
    tokenizer: Any = None,
    pretrained: Any = None,
    toxbench_model: str | None = None,
    toxbench_cache_dir: str | None = None,
    toxbench_data_dir: str | None = None,
    **_: Any,
):
    """``custom_dataset`` entry: the CSV's texts of one concept, in file order (ml-aura keeps the first N), each
    split for the evaluated model's tokenizer."""
    try:
        if data_file is None:
            raise FileNotFoundError("no local file declared")
        rows = read_records(data_file, "csv", toxbench_data_dir)
    except FileNotFoundError:  # raises the usual one-line error
        return local_dataset(data_file, "csv", split, toxbench_data_dir=toxbench_data_dir)
    texts = [r["text"] for r in rows if r.get("concept", concept) == concept]
    if num_sentences is not None:
        texts = texts[: int(num_sentences)]
    if not texts:
        raise UsageError(f"{data_file}: no rows with concept {concept!r}")
    tok = _tokenizer(toxbench_model, toxbench_cache_dir, tokenizer if tokenizer is not None else pretrained)
    return sentences_dataset(texts, tok, split)


def sentences_dataset(texts: list[str], tokenizer: Any, split: str = "test"):
    """One document per text with its split for ``tokenizer``: context, continuation, scored tokens."""
    import datasets

    docs = []
    for t in texts:
        ctx, cont, n = split_text(t, tokenizer)
        docs.append({"text": t, "context": ctx, "continuation": cont, "n_scored": n})
    return datasets.DatasetDict({split: datasets.Dataset.from_list(docs)})


@lru_cache(maxsize=4)
def _load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception:
        try:
            return AutoTokenizer.from_pretrained(name)
        except Exception as e:
            raise UsageError(f"wiki_sentences: cannot load tokenizer {name!r} ({type(e).__name__})") from None


@lru_cache(maxsize=4)
def _model_tokenizer(name: str, cache_dir: str | None):
    """The tokenizer ``load_model(name)`` would give, without loading the weights."""
    source, where = resolve_model_source(name)
    if source == "embedded":
        where = str(embedded_checkpoint(where, cache_dir))
    return _load_tokenizer(where)


def _tokenizer(model: str | None, cache_dir: str | None, given: Any):
    """The evaluated model's tokenizer: the run's model, else a tokenizer object or name lm-eval passed."""
    if isinstance(model, str) and model:
        return _model_tokenizer(model, cache_dir)
    if given is not None and not isinstance(given, str):
        return given
    if isinstance(given, str) and given:
        return _load_tokenizer(given)
    raise UsageError(
        "wiki_sentences needs the evaluated model's tokenizer (ml-aura truncates each text at 128 of its tokens): "
        "run it through `toxbench run`, or pass --metadata '{\"tokenizer\": NAME}' to lm_eval"
    )


def split_text(text: str, tokenizer: Any, max_tokens: int = MAX_TOKENS) -> tuple[str, str, int]:
    """(context, continuation, scored tokens) for one text: first token | tokens 2..max_tokens."""
    enc = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_tokens,
                    return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    # lm-eval re-encodes the text, so cut it where re-encoding gives back a prefix of these exact tokens (a cut
    # inside a word can re-merge its last pieces: then the last token is dropped, 3 of the 100 texts with SmolLM2)
    k = len(ids)
    while k > 2 and tokenizer(text[: offsets[k - 1][1]], add_special_tokens=False)["input_ids"] != ids[:k]:
        k -= 1
    if k < 2:  # ml-aura: 0/0 -> NaN, dropped by its nanmean; lm-eval needs a non-empty dummy pair
        out = (text or ".", text or ".", 0)
    else:
        ctx, cont = text[: offsets[0][1]], text[offsets[0][1]: offsets[k - 1][1]]
        # lm-eval moves a context's trailing spaces into the continuation, then encodes whole and context
        n_sp = len(ctx) - len(ctx.rstrip())
        c = ctx[: len(ctx) - n_sp] if n_sp else ctx
        n = len(tokenizer(ctx + cont, add_special_tokens=False)["input_ids"]) - len(
            tokenizer(c, add_special_tokens=False)["input_ids"])
        out = (ctx, cont, n)
    return out


def doc_to_text(doc: dict) -> str:
    return doc["context"]


def doc_to_target(doc: dict) -> str:
    return doc["continuation"]


def process_results(doc: dict, results: list) -> dict[str, float]:
    """One text's perplexity: exp(-loglikelihood / scored tokens); NaN when nothing was scored."""
    ll = results[0][0] if isinstance(results[0], (tuple, list)) else results[0]
    n = int(doc["n_scored"])
    ppl = math.exp(-float(ll) / n) if n > 0 else float("nan")
    return {"perplexity": ppl, "perplexity_median": ppl, "perplexity_std": ppl}


def nanmean(values: list[float]) -> float:
    """ml-aura's ``torch.nanmean`` over texts."""
    a = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


def nanmedian(values: list[float]) -> float:
    a = np.asarray(values, dtype=np.float64)
    return float(np.nanmedian(a)) if np.isfinite(a).any() else float("nan")


def nanstd(values: list[float]) -> float:
    """ml-aura's ``ppl[~isnan(ppl)].std()`` (torch's default: unbiased)."""
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    return float(a.std(ddof=1)) if a.size > 1 else float("nan")
