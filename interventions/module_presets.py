"""Default modules for expert-unit interventions (AurA, Det0, Damp) and Activation Transport, per family.

ml-aura hooks the outputs of the MLP projections: ``transformer.h.*.mlp.c_fc`` and ``c_proj`` for GPT-2
(configs/aura.yaml) and ``up_proj``/``gate_proj``/``down_proj`` for Mistral (configs/rtp/rtp_evaluation.yaml).
The other families follow the same rule (every linear map of the MLP block) under their own names.
Chosen by ``config.model_type``; an unknown family is an error asking for an explicit ``modules=GLOB``.
"""

from __future__ import annotations

import fnmatch

import torch

from ..harness.core.errors import UsageError

_LLAMA_LIKE = ["model.layers.*.mlp.gate_proj", "model.layers.*.mlp.up_proj", "model.layers.*.mlp.down_proj"]

#: model_type -> glob patterns over module names (outputs of these modules are hooked).
PRESETS: dict[str, list[str]] = {
    "gpt2": ["transformer.h.*.mlp.c_fc", "transformer.h.*.mlp.c_proj"],
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "mixtral": ["model.layers.*.block_sparse_moe.experts.*.w1", "model.layers.*.block_sparse_moe.experts.*.w3",
                "model.layers.*.block_sparse_moe.experts.*.w2"],
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "olmo": _LLAMA_LIKE,
    "olmo2": _LLAMA_LIKE,
    "granite": _LLAMA_LIKE,
    "smollm3": _LLAMA_LIKE,
    "phi3": ["model.layers.*.mlp.gate_up_proj", "model.layers.*.mlp.down_proj"],
    "phi": ["model.layers.*.mlp.fc1", "model.layers.*.mlp.fc2"],
    "falcon": ["transformer.h.*.mlp.dense_h_to_4h", "transformer.h.*.mlp.dense_4h_to_h"],
    "bloom": ["transformer.h.*.mlp.dense_h_to_4h", "transformer.h.*.mlp.dense_4h_to_h"],
    "mpt": ["transformer.blocks.*.ffn.up_proj", "transformer.blocks.*.ffn.down_proj"],
    "gpt_neox": ["gpt_neox.layers.*.mlp.dense_h_to_4h", "gpt_neox.layers.*.mlp.dense_4h_to_h"],
    "gptj": ["transformer.h.*.mlp.fc_in", "transformer.h.*.mlp.fc_out"],
    "gpt_neo": ["transformer.h.*.mlp.c_fc", "transformer.h.*.mlp.c_proj"],
    "opt": ["model.decoder.layers.*.fc1", "model.decoder.layers.*.fc2"],
}

_GEMMA_POST_NORMS = ["model.layers.*.post_attention_layernorm", "model.layers.*.post_feedforward_layernorm"]

#: Activation Transport (linear-act, mean-act): apple/ml-act's ``default_module_names.default`` per model config --
#: GPT-2's layer norms (regex ``.+ln_.+``), Gemma-2's ``post_layernorm`` set (Gemma-3 has the same two norms), and
#: the MLP projections (``icml24``) for Llama and every other family, i.e. AurA's preset.
TRANSPORT_PRESETS: dict[str, list[str]] = {
    "gpt2": ["transformer.h.*.ln_1", "transformer.h.*.ln_2", "transformer.ln_f"],
    "gemma2": _GEMMA_POST_NORMS,
    "gemma3": _GEMMA_POST_NORMS,
    "gemma3_text": _GEMMA_POST_NORMS,
}

#: Wrappers (multimodal checkpoints) nest the language model one level deeper; try these prefixes too.
_NESTINGS = ("", "model.language_model.", "language_model.", "model.text_model.")


def default_patterns(model: torch.nn.Module, presets: dict[str, list[str]] | None = None) -> list[str]:
    """The preset patterns for ``model``'s family (``presets`` first, then the expert-unit ``PRESETS``), adjusted
    to where its decoder layers actually live."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    text_type = getattr(getattr(config, "text_config", None), "model_type", None)
    preset = next((table[t] for table in (presets or {}, PRESETS) for t in (model_type, text_type)  # type: ignore
                   if t in table), None)
    if preset is None:
        raise UsageError(
            f"no default modules for model type {model_type!r}; pass --intervention-arg modules=GLOB "
            f"(comma-separated globs over module names, e.g. 'model.layers.*.mlp.down_proj')"
        )
    names = [n for n, _ in model.named_modules()]
    for nesting in _NESTINGS:
        candidate = [_renest(p, nesting) for p in preset]
        if all(any(fnmatch.fnmatchcase(n, p) for n in names) for p in candidate):
            return candidate
    # Fall back to the preset itself: resolve_modules() then reports close module names.
    return list(preset)


def _renest(pattern: str, nesting: str) -> str:
    if not nesting:
        return pattern
    return nesting + pattern.removeprefix("model.")
