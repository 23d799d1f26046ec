"""Bilingual sentence retrieval per layer (Li, Yong & Bach 2024, Sec. 6: it predicts how well English DPO transfers).

Data: ``translated_pairwise_data/dpo_toxicity_pairwise_<lang>_200.jsonl`` -- 200 English RTP-LX prompts machine
translated into 16 languages, line i parallel across files (see its SOURCE.md). Each sentence is embedded as the
mean-pooled hidden state of every layer (index 0 = embeddings, the last = after the final norm); for each layer
and language, top-1 retrieval accuracy is the fraction of sentences whose nearest neighbour (cosine) on the other
side is their translation, averaged over both directions (English->X and X->English).

The paper's released script (``xg/retrieval/retrieval_acc_load.py``) actually reports the mean cosine between
parallel sentences rather than a top-1 accuracy; we report that number too (``paired_cosine``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.defaults import DEFAULT_BATCH_SIZE
from ...core.errors import UsageError, did_you_mean
from ...core.io import atomic_write_text, read_jsonl
from .probe import pooled_hidden_states, save_plot, write_table

PARALLEL_DIR = "translated_pairwise_data"


def parallel_languages(data_dir: Path) -> list[str]:
    files = (Path(data_dir) / PARALLEL_DIR).glob("dpo_toxicity_pairwise_*_200.jsonl")
    return sorted(p.name.removeprefix("dpo_toxicity_pairwise_").removesuffix("_200.jsonl") for p in files)


def read_parallel(data_dir: Path, lang: str, limit: int | None = None) -> list[str]:
    """The first ``limit`` sentences (parallel by line, so the same ``limit`` keeps files aligned)."""
    langs = parallel_languages(data_dir)
    if lang.lower() not in langs:
        raise did_you_mean(lang, langs or [f"(no {PARALLEL_DIR}/ under the data dir)"], "parallel-data language")
    path = Path(data_dir) / PARALLEL_DIR / f"dpo_toxicity_pairwise_{lang.lower()}_200.jsonl"
    rows = [rec["Prompt"] for rec in read_jsonl(path, objects=True)]
    return rows[:limit] if limit else rows


def resolve_parallel_languages(data_dir: Path, langs: Sequence[str] | None) -> list[str]:
    available = [x for x in parallel_languages(data_dir) if x != "en"]
    if "en" not in parallel_languages(data_dir):
        raise UsageError(f"{PARALLEL_DIR}/dpo_toxicity_pairwise_en_200.jsonl not found under {str(data_dir)!r}")
    if not langs or [x.lower() for x in langs] == ["all"]:
        return available
    out = []
    for lang in langs:
        if lang.lower() not in available:
            raise did_you_mean(lang, available, "parallel-data language (besides en)")
        out.append(lang.lower())
    return out


def retrieval_scores(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Top-1 accuracy both ways and the mean paired cosine for aligned embeddings ``a[i] <-> b[i]``."""
    a = torch.nn.functional.normalize(a.float(), dim=-1)
    b = torch.nn.functional.normalize(b.float(), dim=-1)
    sim = a @ b.T
    gold = torch.arange(len(a))
    a2b = float((sim.argmax(1) == gold).float().mean())
    b2a = float((sim.argmax(0) == gold).float().mean())
    return {"acc_en2x": a2b, "acc_x2en": b2a, "accuracy": (a2b + b2a) / 2, "paired_cosine": float(sim.diag().mean())}


def retrieval_by_layer(
    model: torch.nn.Module,
    tokenizer: Any,
    data_dir: Path,
    languages: Sequence[str],
    *,
    limit: int | None = 200,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = 128,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Long rows ``{language, layer, acc_en2x, acc_x2en, accuracy, paired_cosine, n}``."""
    kw = dict(all_layers=True, batch_size=batch_size, max_length=max_length, progress=progress)
    en_text = read_parallel(data_dir, "en", limit)
    en = pooled_hidden_states(model, tokenizer, en_text, desc="en hidden states", **kw)
    rows = []
    for lang in languages:
        text = read_parallel(data_dir, lang, limit)
        if len(text) != len(en_text):
            raise UsageError(f"{PARALLEL_DIR}: {lang} has {len(text)} sentences, en has {len(en_text)}")
        x = pooled_hidden_states(model, tokenizer, text, desc=f"{lang} hidden states", **kw)
        for layer in range(x.shape[0]):
            rows.append({"language": lang, "layer": layer, "n": len(text), **retrieval_scores(en[layer], x[layer])})
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per language: accuracy averaged over layers (the paper's per-language score), best layer, paired cosine."""
    out = []
    for lang in dict.fromkeys(r["language"] for r in rows):
        rs = [r for r in rows if r["language"] == lang]
        best = max(rs, key=lambda r: r["accuracy"])
        out.append({"language": lang, "n": rs[0]["n"], "mean_accuracy": float(np.mean([r["accuracy"] for r in rs])),
                    "best_layer": best["layer"], "best_accuracy": best["accuracy"],
                    "mean_paired_cosine": float(np.mean([r["paired_cosine"] for r in rs]))})
    return sorted(out, key=lambda r: -r["mean_accuracy"])


def write_retrieval_report(out: Path, rows: list[dict[str, Any]], model_name: str) -> list[Path]:
    """retrieval.md/.csv (per-language summary + a layer x language accuracy grid), retrieval_layers.csv (long),
    retrieval.png (accuracy per layer, one line per language)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    n = rows[0]["n"] if rows else 0
    files = write_table(out / "retrieval", summary,
                        title=f"Bilingual sentence retrieval with English ({model_name}, {n} parallel sentences, "
                              "top-1 accuracy averaged over both directions and all layers)")
    grid = pd.DataFrame(rows).pivot(index="layer", columns="language", values="accuracy")
    grid = grid[[r["language"] for r in summary]]
    md = (out / "retrieval.md").read_text() + "\n## Top-1 accuracy per layer (0 = embeddings)\n\n" + \
        grid.map(lambda v: f"{v:.2f}").reset_index().astype(str).to_markdown(index=False, disable_numparse=True) + "\n"
    atomic_write_text(out / "retrieval.md", md)
    files += write_table(out / "retrieval_layers", rows)[:1]
    (out / "retrieval_layers.md").unlink(missing_ok=True)

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for lang in grid.columns:
        ax.plot(grid.index, grid[lang], marker=".", lw=1, label=lang)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("top-1 retrieval accuracy with English")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{model_name}: bilingual sentence retrieval per layer")
    ax.legend(ncol=2, fontsize=7, loc="best")
    files.append(save_plot(fig, out / "retrieval.png"))
    return files
