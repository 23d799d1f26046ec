"""`toxbench analyze`: the cross-lingual paper's mechanistic analyses (probe, toxic vectors, activation shift,
bilingual retrieval). Each subcommand writes a Markdown + CSV table and a PNG plot into ``--out``.

The default model is gemma3-270m, not the CLI's smollm2-135m: the analyses compare languages, so they need the
embedded multilingual model. Vocabulary projections of toxic vectors are likely offensive: they go to the table
file only, never to the terminal.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from ...interventions import split_names
from ...interventions.toxic_vectors import load_vectors
from ..core.errors import UsageError
from ..core.models import LoadedModel, load_model
from ..core.paths import cache_dir as resolve_cache
from ..core.paths import data_dir as resolve_data
from ..measure.analysis.activations import activation_shift, resolve_languages, write_activation_report
from ..measure.analysis.probe import ProbeSettings, probe_cache_path, train_probe, write_probe_report
from ..measure.analysis.retrieval import (
    resolve_parallel_languages,
    retrieval_by_layer,
    summarise,
    write_retrieval_report,
)
from ..measure.analysis.value_vectors import find_toxic_vectors_cached, write_toxic_vectors_report
from ..run.prepare import Setup, prepare
from ..spec.values import parse_kv, split_commas
from .base import ToxbenchGroup
from .options import (
    batch_size_option,
    bundle,
    cache_dir_option,
    data_dir_option,
    device_option,
    dtype_option,
    intervention_arg_option,
    intervention_option,
    intervention_state_option,
    model_option,
    seed_option,
    threads_option,
)

#: the embedded multilingual model: the analyses compare languages
ANALYSIS_MODEL = "gemma3-270m"


def _log(msg: str) -> None:
    click.echo(f"[analyze] {msg}", err=True)


common_options = bundle(
    model_option(default=ANALYSIS_MODEL),
    data_dir_option,
    cache_dir_option,
    click.option("--out", "out", default=None, type=click.Path(file_okay=False),
                 help="Output folder for tables and plots [default: analysis/<model>]."),
    batch_size_option,
    device_option,
    dtype_option,
    seed_option,
    threads_option,
    click.option("--progress/--no-progress", default=True, show_default=True),
)
probe_options = bundle(
    click.option("--jigsaw-file", default="robtest_balanced/test.csv", show_default=True,
                 help="Labelled Jigsaw CSV under <data-dir>/jigsaw (Kaggle layout or text,label)."),
    click.option("--probe-limit", default=2000, show_default=True, type=click.IntRange(min=0),
                 help="Jigsaw comments for the probe (label-stratified sample; 0 = whole file)."),
)
vector_options = bundle(
    click.option("--top-k", default=100, show_default=True, type=click.IntRange(min=1),
                 help="Candidate value vectors by cosine with the probe."),
    click.option("--n-new-tokens", default=20, show_default=True, type=click.IntRange(min=1),
                 help="Greedy tokens over which neuron activations are averaged."),
)


def _setup(model: str, data_dir: str | None, cache_dir: str | None, out: str | None, device: str,
           dtype: str) -> tuple[LoadedModel, Path, Path, Path]:
    # no global torch.set_grad_enabled(False): it would leak into the caller (tests, other commands)
    root = resolve_data(data_dir)
    cache = resolve_cache(cache_dir)
    out_dir = Path(out) if out else Path("analysis") / re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("_")
    _log(f"loading {model}")
    loaded = load_model(model, dtype=dtype, device=device, cache_dir=cache)
    return loaded, root, cache, out_dir


def _probe_settings(jigsaw_file: str, probe_limit: int, seed: int) -> ProbeSettings:
    return ProbeSettings(jigsaw_file=jigsaw_file, limit=probe_limit or None, seed=seed)


def _done(files: list[Path], summary: dict[str, Any]) -> None:
    for f in files:
        _log(f"wrote {f}")
    click.echo(json.dumps(summary, sort_keys=True, default=str))


@click.group("analyze", cls=ToxbenchGroup)
def analyze() -> None:
    """Mechanistic analyses of toxicity (Lee et al. 2024; Li, Yong & Bach 2024): probe, toxic vectors,
    activation shift under an intervention, bilingual sentence retrieval.

    The default --model is gemma3-270m (the embedded multilingual model), since the analyses compare languages."""


@analyze.command("probe")
@common_options
@probe_options
@click.option("--max-length", default=128, show_default=True, type=click.IntRange(min=8),
              help="Tokens per comment (longer comments are truncated).")
@click.option("--test-frac", default=0.1, show_default=True, type=click.FloatRange(0.01, 0.9),
              help="Held-out fraction (the paper: 10%).")
def probe_cmd(model, data_dir, cache_dir, out, batch_size, device, dtype, seed, threads, progress, jigsaw_file,
              probe_limit, max_length, test_frac) -> None:
    """Train a linear toxicity probe on the final layer's mean-pooled hidden states; report held-out accuracy.

    Writes probe.md/.csv, probe.png (held-out score histograms) and probe.safetensors (the toxic direction).
    """
    loaded, root, cache, out_dir = _setup(model, data_dir, cache_dir, out, device, dtype)
    settings = replace(_probe_settings(jigsaw_file, probe_limit, seed), max_length=max_length, test_frac=test_frac)
    probe, held_out = train_probe(loaded.model, loaded.tokenizer, root, settings, batch_size=batch_size,
                                  model_fingerprint=loaded.fingerprint, model_name=loaded.name, progress=progress)
    files = write_probe_report(out_dir, probe, held_out, loaded.name)
    # later toxic-vectors/activations runs with the same probe settings reuse this probe instead of retraining
    cached = probe_cache_path(cache, root, settings, loaded.fingerprint)
    cached.parent.mkdir(parents=True, exist_ok=True)
    probe.save(cached)
    _done(files, {"model": loaded.name, **probe.metrics})


@analyze.command("toxic-vectors")
@common_options
@probe_options
@vector_options
@click.option("--limit", default=200, show_default=True, type=click.IntRange(min=0),
              help="English RTP-LX prompts (seeded sample; 0 = all).")
@click.option("--top-tokens", default=10, show_default=True, type=click.IntRange(min=1),
              help="Vocabulary tokens listed per kept vector (table file only).")
def toxic_vectors_cmd(model, data_dir, cache_dir, out, batch_size, device, dtype, seed, threads, progress,
                      jigsaw_file, probe_limit, top_k, n_new_tokens, limit, top_tokens) -> None:
    """Find the toxic MLP value vectors: top-k by cosine with the probe, kept when their neurons fire positively
    over the next tokens of English RTP-LX prompts; project the kept ones onto the vocabulary.

    Writes toxic_vectors.md/.csv, toxic_vectors.png and toxic_vectors.safetensors (usable as
    `--intervention toxic-vectors --intervention-state` and as `analyze activations --vectors`).
    """
    loaded, root, cache, out_dir = _setup(model, data_dir, cache_dir, out, device, dtype)
    probe, vectors = find_toxic_vectors_cached(
        loaded.model, loaded.tokenizer, root, cache, _probe_settings(jigsaw_file, probe_limit, seed), top_k=top_k,
        n_new_tokens=n_new_tokens, prompt_limit=limit or None, seed=seed, batch_size=batch_size,
        model_fingerprint=loaded.fingerprint, model_name=loaded.name, progress=progress, log=_log)
    n_prompts = limit or "all"
    files = write_toxic_vectors_report(out_dir, vectors, loaded.model, loaded.tokenizer, loaded.name, probe,
                                       n_prompts, topk_tokens=top_tokens)
    kept = [v for v in vectors if v.kept]
    layers: dict[int, int] = {}
    for v in kept:
        layers[v.layer] = layers.get(v.layer, 0) + 1
    _done(files, {"model": loaded.name, "candidates": len(vectors), "kept": len(kept),
                  "probe_test_accuracy": probe.metrics.get("test_accuracy"),
                  "max_cosine": max(v.cosine for v in vectors), "kept_per_layer": dict(sorted(layers.items()))})


@analyze.command("activations")
@common_options
@intervention_option(None, help="What 'after' is: a DPO checkpoint dir, or an intervention name/composition "
                                "(dpo, aura, toxic-vectors, preprompt, ...).")
@intervention_state_option
@intervention_arg_option
@click.option("--vectors", default=None, type=click.Path(dir_okay=False),
              help="toxic_vectors.safetensors from `analyze toxic-vectors` [default: found (and cached) here].")
@click.option("--langs", default=None, help="Comma-separated RTP-LX codes, or 'all' [default: the paper's 17].")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=0),
              help="Prompts per language (seeded sample; 0 = all).")
@click.option("--vector-prompts", default=200, show_default=True, type=click.IntRange(min=0),
              help="English prompts used to find the vectors when --vectors is not given (0 = all).")
@probe_options
@vector_options
def activations_cmd(model, data_dir, cache_dir, out, batch_size, device, dtype, seed, threads, progress,
                    intervention, intervention_state, intervention_args, vectors, langs, limit, vector_prompts,
                    jigsaw_file, probe_limit, top_k, n_new_tokens) -> None:
    """Mean activation of the toxic vectors per RTP-LX language, before vs after an intervention.

    Writes activations.md/.csv, activations_neurons.csv and activations.png.
    """
    # check everything that needs no model before loading it
    if vectors and not Path(vectors).is_file():
        raise UsageError(f"--vectors {vectors!r} not found (write one with `toxbench analyze toxic-vectors`)")
    checkpoint = Path(intervention).is_dir()
    if not checkpoint:
        split_names(intervention)
    args = () if checkpoint else parse_kv(intervention_args, "--intervention-arg", "scale=0")
    languages = resolve_languages(resolve_data(data_dir),
                                  split_commas(langs) if langs else None)
    loaded, root, cache, out_dir = _setup(model, data_dir, cache_dir, out, device, dtype)
    if vectors:
        neurons = load_vectors(vectors, loaded.fingerprint)
    else:
        _, found = find_toxic_vectors_cached(
            loaded.model, loaded.tokenizer, root, cache, _probe_settings(jigsaw_file, probe_limit, seed),
            top_k=top_k, n_new_tokens=n_new_tokens, prompt_limit=vector_prompts or None, seed=seed,
            batch_size=batch_size, model_fingerprint=loaded.fingerprint, model_name=loaded.name, progress=progress,
            log=_log)
        neurons = [(v.layer, v.neuron) for v in found if v.kept]
    if not neurons:
        raise UsageError("no toxic vectors to measure (none had a positive activation); raise --top-k")

    after = None
    iv = None
    if checkpoint:  # a DPO (or any fine-tuned) checkpoint of the same architecture
        _log(f"loading the 'after' checkpoint {intervention}")
        after = load_model(loaded.name, dtype=dtype, device=device, cache_dir=cache, weights_override=intervention)
        label = f"checkpoint {Path(intervention).name}"
    else:  # 'before' is the base model; 'after' is it under the intervention (or the intervention's own weights)
        setup = Setup(model=loaded.name, dtype=dtype, device=device, intervention=intervention, intervention_args=args,
                      intervention_state=intervention_state, cache_dir=cache, data_dir=root, batch_size=batch_size,
                      seed=seed)
        prepared = prepare(setup, loaded=loaded, log=_log)
        iv = prepared.intervention
        if prepared.weights is not None:
            after = prepared.loaded
        label = intervention + "".join(f" {a}" for a in intervention_args)
    rows, neuron_rows = activation_shift(
        loaded.model, loaded.tokenizer, neurons, languages, root,
        after_model=after.model if after else None, after_tokenizer=after.tokenizer if after else None,
        intervention=iv, limit=limit or None, seed=seed, n_new_tokens=n_new_tokens, batch_size=batch_size,
        progress=progress)
    files = write_activation_report(out_dir, rows, neuron_rows, loaded.name, label, len(neurons), n_new_tokens)
    lower = sum(r["after"] < r["before"] for r in rows)
    _done(files, {"model": loaded.name, "after": label, "neurons": len(neurons), "languages": len(rows),
                  "languages_lower_after": lower,
                  "rows": {r["language"]: [round(r["before"], 4), round(r["after"], 4)] for r in rows}})


@analyze.command("retrieval")
@common_options
@click.option("--langs", default=None, help="Comma-separated codes of translated_pairwise_data (e.g. de,zh) "
                                            "[default: all 16 besides en].")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(min=0),
              help="Parallel sentences per language (the first N; 0 = all 200).")
@click.option("--max-length", default=128, show_default=True, type=click.IntRange(min=8))
def retrieval_cmd(model, data_dir, cache_dir, out, batch_size, device, dtype, seed, threads, progress, langs, limit,
                  max_length) -> None:
    """Bilingual sentence retrieval accuracy with English per layer (mean-pooled hidden states, cosine, top-1).

    Writes retrieval.md/.csv (per-language summary + per-layer grid), retrieval_layers.csv and retrieval.png.
    """
    languages = resolve_parallel_languages(resolve_data(data_dir),
                                           split_commas(langs) if langs else None)
    if limit == 1:
        raise UsageError("--limit 1 leaves nothing to retrieve against; use at least 2")
    loaded, root, cache, out_dir = _setup(model, data_dir, cache_dir, out, device, dtype)
    rows = retrieval_by_layer(loaded.model, loaded.tokenizer, root, languages, limit=limit or None,
                              batch_size=batch_size, max_length=max_length, progress=progress)
    files = write_retrieval_report(out_dir, rows, loaded.name)
    _done(files, {"model": loaded.name, "mean_accuracy": {r["language"]: round(r["mean_accuracy"], 4)
                                                          for r in summarise(rows)}})


if __name__ == "__main__":  # pragma: no cover
    sys.exit(analyze())
