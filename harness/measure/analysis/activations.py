"""Activation shift of the toxic vectors per language (Li, Yong & Bach 2024, Fig. 3; Lee et al. 2024, Fig. 4).

For each RTP-LX language, the toxic neurons' activations are averaged over the next ``n_new_tokens`` greedy tokens
of that language's prompts, once on the base model ("before") and once under an intervention ("after"): a DPO
checkpoint (another model with the same architecture), or any toxbench intervention (AurA, toxic-vectors,
pre-prompting...) attached to the base model. The paper's finding is that English-only DPO lowers them in every
language. As in the paper's script, a language's value is the mean over neurons of each neuron's mean activation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.defaults import DEFAULT_BATCH_SIZE, DEFAULT_SEED
from ...core.errors import UsageError, did_you_mean
from .probe import save_plot, write_table
from .value_vectors import greedy_neuron_activations, read_rtp_lx, rtp_lx_languages

#: The 17 languages of the paper's activation and retrieval figures, as RTP-LX file codes.
PAPER_LANGUAGES = ("AR", "CS", "DE", "EN", "ES", "FR", "HI", "ID", "IT", "JA", "KO", "NL", "PL", "PT", "RU", "SV",
                   "ZH-Hans")


def resolve_languages(data_dir: Path, langs: Sequence[str] | None) -> list[str]:
    """``None``: the paper's 17; ``["all"]``: every RTP-LX file; else validated codes (case-insensitive)."""
    available = rtp_lx_languages(data_dir)
    if not available:
        raise UsageError(f"no rtp_lx/RTP_LX_*.json files under the data dir {str(data_dir)!r}")
    if not langs:
        return [lang for lang in PAPER_LANGUAGES if lang in available]
    if [x.lower() for x in langs] == ["all"]:
        return available
    by_lower = {x.lower(): x for x in available}
    out = []
    for lang in langs:
        if lang.lower() not in by_lower:
            raise did_you_mean(lang.upper(), available, "RTP-LX language")
        out.append(by_lower[lang.lower()])
    return out


def activation_shift(
    model: torch.nn.Module,
    tokenizer: Any,
    neurons: Sequence[tuple[int, int]],
    languages: Sequence[str],
    data_dir: Path,
    *,
    after_model: torch.nn.Module | None = None,
    after_tokenizer: Any = None,
    intervention: Any = None,
    limit: int | None = 50,
    seed: int = DEFAULT_SEED,
    n_new_tokens: int = 20,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-language rows (before, after, change) and per-neuron rows, for the tables.

    "after" runs ``after_model`` (or the base model) with ``intervention`` attached and its prompt rewrite.
    """
    import contextlib

    rows, neuron_rows = [], []
    a_model = after_model if after_model is not None else model
    a_tok = after_tokenizer if after_tokenizer is not None else tokenizer
    for lang in languages:
        prompts = read_rtp_lx(data_dir, lang, limit, seed)
        kw = dict(n_new_tokens=n_new_tokens, batch_size=batch_size, progress=progress)
        before = greedy_neuron_activations(model, tokenizer, prompts, neurons, desc=f"{lang} before", **kw).mean(0)
        after_prompts = [intervention.wrap_prompt(p, a_tok) for p in prompts] if intervention else prompts
        ctx = intervention.attach(a_model) if intervention is not None else contextlib.nullcontext()
        with ctx:
            after = greedy_neuron_activations(a_model, a_tok, after_prompts, neurons, desc=f"{lang} after",
                                              **kw).mean(0)
        b, a = float(np.mean(before)), float(np.mean(after))
        rows.append({"language": lang, "n_prompts": len(prompts), "before": b, "after": a, "delta": a - b,
                     "change_pct": 100.0 * (a - b) / abs(b) if b else float("nan")})
        for (layer, neuron), nb, na in zip(neurons, before, after):
            neuron_rows.append({"language": lang, "layer": layer, "neuron": neuron, "before": float(nb),
                                "after": float(na)})
    return rows, neuron_rows


def write_activation_report(
    out: Path, rows: list[dict[str, Any]], neuron_rows: list[dict[str, Any]], model_name: str, after_label: str,
    n_neurons: int, n_new_tokens: int = 20,
) -> list[Path]:
    """activations.md/.csv (per language), activations_neurons.csv (per neuron), activations.png (bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    title = (f"Mean activation of {n_neurons} toxic vectors per RTP-LX language ({model_name}): before vs "
             f"after {after_label}")
    files = write_table(out / "activations", rows, title=title)
    files += write_table(out / "activations_neurons", neuron_rows)[:1]  # the CSV; per-neuron Markdown is noise
    (out / "activations_neurons.md").unlink(missing_ok=True)

    langs = [r["language"] for r in rows]
    x = np.arange(len(langs))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(langs) + 2), 3.8))
    ax.bar(x - 0.2, [r["before"] for r in rows], 0.4, label=f"before ({model_name})")
    ax.bar(x + 0.2, [r["after"] for r in rows], 0.4, label=f"after ({after_label})")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(x, langs, rotation=45, ha="right")
    ax.set_ylabel("mean toxic-vector activation")
    ax.set_title(f"{n_neurons} toxic vectors, averaged over the next {n_new_tokens} greedy tokens")
    ax.legend()
    files.append(save_plot(fig, out / "activations.png"))
    return files
