"""Toxic value vectors in the MLPs (Lee et al. 2024, Sec. 3; Li, Yong & Bach 2024, Sec. 5).

An MLP writes ``sum_i a_i * v_i`` into the residual stream, where ``a_i`` is neuron i's activation (the input of
the down projection) and ``v_i`` its *value vector* (GPT-2: row i of ``mlp.c_proj.weight``; Llama/Gemma: column i
of ``mlp.down_proj.weight``). Following the papers we
1. rank every value vector of every layer by cosine similarity with the toxicity probe's weight and take the top
   ``top_k`` (100);
2. greedily continue English RTP-LX prompts for ``n_new_tokens`` (20) tokens, average each candidate neuron's
   activation at the position that predicts each new token, and keep the vectors whose mean activation is > 0
   (those actually push the toxic direction);
3. project each kept vector onto the vocabulary through the unembedding (top tokens it promotes).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ....interventions.base import State
from ....interventions.forward_hooks import hooked
from ...core.defaults import DEFAULT_BATCH_SIZE, DEFAULT_SEED
from ...core.errors import UsageError, did_you_mean
from ...core.io import atomic_write_json, canonical_json, read_jsonl, sha256_text
from ...core.models import model_fingerprint
from .probe import (
    ProbeSettings,
    ToxicityProbe,
    _pad_id,
    cached_probe,
    encode,
    model_device,
    pad_batch,
    save_plot,
    write_table,
)

#: Module-name endings of the MLP down (output) projection, per architecture family.
DOWN_PROJ_SUFFIXES = ("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h", "mlp.fc2", "mlp.fc_out", "feed_forward.w2")


@dataclass(frozen=True)
class MLPSite:
    layer: int
    name: str  # the down projection's module name
    d_mlp: int


def _down_weight(module: torch.nn.Module) -> torch.Tensor:
    """Value vectors as rows, ``[d_mlp, d_model]``: GPT-2's Conv1D stores (in, out), ``nn.Linear`` (out, in)."""
    w = module.weight
    if type(module).__name__ == "Conv1D":
        return w
    if isinstance(module, torch.nn.Linear):
        return w.T
    raise UsageError(f"unsupported MLP down projection type {type(module).__name__}")


def mlp_sites(model: torch.nn.Module) -> list[MLPSite]:
    """Every transformer layer's MLP down projection, in layer order."""
    sites: list[MLPSite] = []
    for name, mod in model.named_modules():
        if name.endswith(DOWN_PROJ_SUFFIXES) and hasattr(mod, "weight"):
            nums = re.findall(r"\.(\d+)\.", f".{name}.")
            if not nums:
                continue
            sites.append(MLPSite(int(nums[-1]), name, int(_down_weight(mod).shape[0])))
    if not sites:
        raise UsageError(f"found no MLP down projection in {type(model).__name__} "
                         f"(looked for modules ending in {', '.join(DOWN_PROJ_SUFFIXES)})")
    return sorted(sites, key=lambda s: s.layer)


def value_vectors(model: torch.nn.Module, site: MLPSite) -> torch.Tensor:
    return _down_weight(dict(model.named_modules())[site.name]).detach()


@torch.no_grad()
def top_value_vectors(model: torch.nn.Module, direction: torch.Tensor, k: int = 100) -> list[tuple[int, int, float]]:
    """``(layer, neuron, cosine)`` of the ``k`` value vectors most aligned with ``direction``, best first.

    Computed layer by layer so a 7B model never materialises all its value vectors in float32 at once.
    """
    d = direction.float().flatten()
    best: list[tuple[float, int, int]] = []
    for site in mlp_sites(model):
        vv = value_vectors(model, site).float().cpu()
        if vv.shape[1] != d.shape[0]:
            raise UsageError(f"probe width {d.shape[0]} does not match the model's residual width {vv.shape[1]}")
        cos = torch.nn.functional.cosine_similarity(vv, d[None], dim=1)
        vals, idx = torch.topk(cos, min(k, len(cos)))
        best.extend((float(v), site.layer, int(i)) for v, i in zip(vals, idx))
        best = sorted(best, reverse=True)[:k]
    return [(layer, neuron, cos) for cos, layer, neuron in best]


# -- prompts -------------------------------------------------------------------------------------------------------
def rtp_lx_languages(data_dir: Path) -> list[str]:
    return sorted(p.stem.removeprefix("RTP_LX_") for p in (Path(data_dir) / "rtp_lx").glob("RTP_LX_*.json"))


def read_rtp_lx(data_dir: Path, lang: str = "EN", limit: int | None = None, seed: int = DEFAULT_SEED) -> list[str]:
    """Prompts of ``rtp_lx/RTP_LX_<LANG>.json`` (JSON Lines); ``limit`` draws a seeded random subsample."""
    path = Path(data_dir) / "rtp_lx" / f"RTP_LX_{lang}.json"
    if not path.is_file():
        langs = rtp_lx_languages(data_dir)
        match = {x.lower(): x for x in langs}.get(lang.lower())
        if match is None:
            raise did_you_mean(lang, langs or ["(no rtp_lx/RTP_LX_*.json under the data dir)"], "RTP-LX language")
        path = path.with_name(f"RTP_LX_{match}.json")
    prompts = [str(rec["Prompt"]) for rec in read_jsonl(path, objects=True) if rec.get("Prompt")]
    if limit is not None and limit < len(prompts):
        rng = np.random.default_rng(seed)
        prompts = [prompts[i] for i in sorted(rng.choice(len(prompts), size=limit, replace=False).tolist())]
    return prompts


# -- activations ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def greedy_neuron_activations(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    neurons: Sequence[tuple[int, int]],
    *,
    n_new_tokens: int = 20,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_prompt_tokens: int = 128,
    progress: bool = True,
    desc: str = "neuron activations",
) -> np.ndarray:
    """``[n_prompts, n_neurons]``: each neuron's activation averaged over ``n_new_tokens`` greedy steps.

    At each step we read the activation at the last position (the one predicting the next token), as the papers
    do with TransformerLens' ``mlp_post`` hook; generation never stops at EOS, so every prompt gets exactly
    ``n_new_tokens`` readings. Any intervention attached around this call is seen (it changes the readings).
    """
    if not neurons:
        return np.zeros((len(prompts), 0), dtype=np.float32)
    sites = {s.layer: s for s in mlp_sites(model)}
    by_layer: dict[int, list[int]] = defaultdict(list)  # layer -> column positions in the output
    for col, (layer, neuron) in enumerate(neurons):
        if layer not in sites or not 0 <= neuron < sites[layer].d_mlp:
            raise UsageError(f"neuron ({layer}, {neuron}) does not exist in this model")
        by_layer[layer].append(col)
    idx = {layer: torch.tensor([neurons[c][1] for c in cols]) for layer, cols in by_layer.items()}
    readings: dict[int, torch.Tensor] = {}

    def recorder(layer: int):
        def hook(module: torch.nn.Module, args: tuple) -> None:
            x = args[0]
            readings[layer] = x[:, -1, idx[layer].to(x.device)].float()
        return hook

    seqs = encode(tokenizer, prompts, max_prompt_tokens)
    device = model_device(model)
    cache_arg, extra = _forward_kwargs(model)
    out = np.zeros((len(prompts), len(neurons)), dtype=np.float64)
    hooks = {sites[layer].name: recorder(layer) for layer in by_layer}
    with hooked(model, hooks, pre=True):
        for start in tqdm(range(0, len(seqs), batch_size), desc=desc, disable=not progress, leave=False):
            ids, mask = pad_batch(seqs[start: start + batch_size], _pad_id(tokenizer), side="left")
            ids, mask = ids.to(device), mask.to(device)
            pos = (mask.cumsum(-1) - 1).clamp_min(0)  # left padding: real tokens start at position 0
            acc = torch.zeros((len(ids), len(neurons)), dtype=torch.float64)
            past = None
            step_ids, step_pos = ids, pos
            for _ in range(n_new_tokens):
                o = model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, use_cache=True,
                          **{cache_arg: past}, **extra)
                for layer, cols in by_layer.items():
                    acc[:, cols] += readings[layer].double().cpu()
                past = getattr(o, cache_arg, None)
                step_ids = o.logits[:, -1].argmax(-1, keepdim=True)
                step_pos = step_pos[:, -1:] + 1
                mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)
            out[start: start + len(ids)] = (acc / n_new_tokens).numpy()
    return out.astype(np.float32)


def _forward_kwargs(model: torch.nn.Module) -> tuple[str, dict[str, Any]]:
    """The KV-cache argument's name (transformers 5.2x: ``cache``; earlier: ``past_key_values``) and, where
    supported, ``logits_to_keep=1`` so a 262k-token vocabulary is not unembedded at every prompt position."""
    import inspect

    params = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    return cache_arg, extra


# -- the toxic vectors ---------------------------------------------------------------------------------------------
@dataclass
class ToxicVector:
    rank: int
    layer: int
    neuron: int
    cosine: float
    activation: float  # mean over prompts and generated tokens
    kept: bool


def find_toxic_vectors(
    model: torch.nn.Module,
    tokenizer: Any,
    probe: ToxicityProbe,
    prompts: Sequence[str],
    *,
    top_k: int = 100,
    n_new_tokens: int = 20,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> list[ToxicVector]:
    """All ``top_k`` candidates (best cosine first), with their mean activation and whether they are kept."""
    cands = top_value_vectors(model, probe.weight, top_k)
    acts = greedy_neuron_activations(model, tokenizer, prompts, [(la, n) for la, n, _ in cands],
                                     n_new_tokens=n_new_tokens, batch_size=batch_size, progress=progress,
                                     desc="toxic-vector activations").mean(0)
    return [ToxicVector(r + 1, la, n, c, float(a), bool(a > 0)) for r, ((la, n, c), a) in enumerate(zip(cands, acts))]


def find_toxic_vectors_cached(
    model: torch.nn.Module,
    tokenizer: Any,
    data_dir: Path,
    cache_dir: Path | None,
    probe_settings: ProbeSettings = ProbeSettings(),
    *,
    top_k: int = 100,
    n_new_tokens: int = 20,
    prompt_limit: int | None = 200,
    seed: int = DEFAULT_SEED,
    batch_size: int = DEFAULT_BATCH_SIZE,
    model_fingerprint: str = "",
    model_name: str = "",
    progress: bool = True,
    log=lambda msg: None,
) -> tuple[ToxicityProbe, list[ToxicVector]]:
    """Probe + candidates, each cached under ``cache_dir/analysis/<model>`` (JSON for the vector list)."""
    probe = cached_probe(model, tokenizer, data_dir, cache_dir, probe_settings, model_fingerprint=model_fingerprint,
                         model_name=model_name, batch_size=batch_size, progress=progress, log=log)
    key = sha256_text(canonical_json({"probe": probe.weight.numpy().round(6).tolist()[:64],
                                      "probe_settings": probe_settings.__dict__, "top_k": top_k,
                                      "n_new_tokens": n_new_tokens, "prompts": prompt_limit, "seed": seed}))[:16]
    path = Path(cache_dir) / "analysis" / model_fingerprint[:16] / f"toxic-vectors-{key}.json" if cache_dir else None
    if path is not None and path.is_file():
        return probe, [ToxicVector(**r) for r in json.loads(path.read_text())["vectors"]]
    prompts = read_rtp_lx(data_dir, "EN", prompt_limit, seed)
    log(f"scoring {top_k} candidate value vectors on {len(prompts)} English RTP-LX prompts x {n_new_tokens} tokens")
    vectors = find_toxic_vectors(model, tokenizer, probe, prompts, top_k=top_k, n_new_tokens=n_new_tokens,
                                 batch_size=batch_size, progress=progress)
    if path is not None:
        atomic_write_json(path, {"model_fingerprint": model_fingerprint, "n_prompts": len(prompts),
                                 "vectors": [asdict(v) for v in vectors]})
    return probe, vectors


@torch.no_grad()
def vocab_projection(model: torch.nn.Module, tokenizer: Any, layer: int, neuron: int, topk: int = 10) -> list[str]:
    """The tokens a value vector promotes most: top of ``W_U @ v`` (no final norm, as in both papers)."""
    site = {s.layer: s for s in mlp_sites(model)}[layer]
    v = value_vectors(model, site)[neuron].float()
    unembed = model.get_output_embeddings().weight.detach()
    logits = unembed.float() @ v.to(unembed.device)
    return [tokenizer.decode([int(i)]) for i in torch.topk(logits, topk).indices.tolist()]


def _cell(token: str) -> str:
    """Keep a token visible and the Markdown table intact: repr shows spaces/newlines, pipes are escaped."""
    return repr(token).replace("|", "\\|")


def write_toxic_vectors_report(
    out: Path, vectors: list[ToxicVector], model: torch.nn.Module, tokenizer: Any, model_name: str,
    probe: ToxicityProbe, n_prompts: int | str, topk_tokens: int = 10,
) -> list[Path]:
    """toxic_vectors.md/.csv (every candidate; vocabulary projections of the kept ones), toxic_vectors.png,
    toxic_vectors.safetensors (the kept list, usable as ``--intervention-state`` of ``toxic-vectors``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for v in vectors:
        toks = vocab_projection(model, tokenizer, v.layer, v.neuron, topk_tokens) if v.kept else []
        rows.append({"rank": v.rank, "layer": v.layer, "neuron": v.neuron, "cosine": v.cosine,
                     "mean_activation": v.activation, "kept": v.kept,
                     "top_tokens": ", ".join(_cell(t) for t in toks)})
    kept = [v for v in vectors if v.kept]
    title = (f"Toxic value vectors ({model_name}): {len(kept)} of the top {len(vectors)} by cosine with the probe "
             f"have positive mean activation over {n_prompts} English RTP-LX prompts (content warning: the "
             "top_tokens column lists what toxic vectors promote and is likely offensive)")
    files = write_table(out / "toxic_vectors", rows, title=title)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    c = ["tab:red" if v.kept else "tab:gray" for v in vectors]
    a1.scatter([v.cosine for v in vectors], [v.activation for v in vectors], c=c, s=14)
    a1.axhline(0, color="k", lw=0.6)
    a1.set_xlabel("cosine(value vector, probe)")
    a1.set_ylabel("mean activation (EN, next 20 tokens)")
    a1.set_title(f"top-{len(vectors)} candidates (red: kept, {len(kept)})")
    n_layers = len(mlp_sites(model))
    a2.hist([v.layer for v in kept], bins=np.arange(n_layers + 1) - 0.5, color="tab:red")
    a2.set_xlabel("layer")
    a2.set_ylabel("kept toxic vectors")
    a2.set_title("where the kept vectors live")
    files.append(save_plot(fig, out / "toxic_vectors.png"))
    if kept:
        st = vectors_state(kept, probe, model_fingerprint(model), model_name,
                           {"top_k": len(vectors), "prompts": n_prompts}, n_candidates=len(vectors))
        st.save(out / "toxic_vectors.safetensors")
        files.append(out / "toxic_vectors.safetensors")
    return files


def vectors_state(
    vectors: list[Any], probe: Any, model_fingerprint: str, model_name: str, settings: dict[str, Any],
    n_candidates: int,
) -> State:
    """The saved form of a toxic-vector list: ``layers``/``neurons`` (int64) plus their cosine and activation."""
    return State(
        {
            "layers": torch.tensor([v.layer for v in vectors], dtype=torch.int64),
            "neurons": torch.tensor([v.neuron for v in vectors], dtype=torch.int64),
            "cosine": torch.tensor([v.cosine for v in vectors], dtype=torch.float32),
            "activation": torch.tensor([v.activation for v in vectors], dtype=torch.float32),
            "probe.weight": probe.weight.float(),
        },
        {
            "model_fingerprint": model_fingerprint,
            "model": model_name,
            "method": "toxic value vectors (top-k cosine with probe, positive mean activation)",
            "settings": settings,
            "probe_metrics": probe.metrics,
            "n_candidates": n_candidates,
            "n_kept": len(vectors),
        },
    )
