"""The hook context manager: validates first, removes exactly its own handles (also after an exception)."""

from __future__ import annotations

import pytest
import torch

from toxbench.harness.core.errors import UsageError
from toxbench.interventions.forward_hooks import hooked, resolve_modules, scale_output_hook


def _count_hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_hooks_removed_after_block_and_foreign_hooks_survive(tiny_llama_model):
    model, tok = tiny_llama_model
    foreign = model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, o: None)
    before = _count_hooks(model)
    names = resolve_modules(model, ["model.layers.*.mlp.down_proj"])
    alpha = torch.zeros(16)
    ids = tok("the film was good", return_tensors="pt").input_ids
    plain = model(ids).logits
    with hooked(model, {n: scale_output_hook(alpha) for n in names}):
        assert _count_hooks(model) == before + len(names)
        zeroed = model(ids).logits
    assert _count_hooks(model) == before
    assert not torch.allclose(plain, zeroed)
    torch.testing.assert_close(model(ids).logits, plain)
    foreign.remove()


def test_hooks_removed_after_exception(tiny_gpt2_model):
    model, _ = tiny_gpt2_model
    before = _count_hooks(model)
    names = resolve_modules(model, "transformer.h.*.mlp.c_fc")
    with pytest.raises(RuntimeError):
        with hooked(model, {n: scale_output_hook(torch.ones(64)) for n in names}):
            assert _count_hooks(model) == before + 2
            raise RuntimeError("boom")
    assert _count_hooks(model) == before


def test_unknown_module_validated_before_attaching(tiny_llama_model):
    model, _ = tiny_llama_model
    before = _count_hooks(model)
    with pytest.raises(UsageError, match="unknown module 'model.layers.0.mlp.nope'"):
        with hooked(model, {"model.layers.0.mlp.down_proj": lambda m, i, o: o, "model.layers.0.mlp.nope": lambda m, i, o: o}):
            pass
    assert _count_hooks(model) == before


def test_glob_matching_nothing_suggests_close_names(tiny_gpt2_model):
    model, _ = tiny_gpt2_model
    with pytest.raises(UsageError) as e:
        resolve_modules(model, ["transformer.h.*.mlp.fc"])
    msg = str(e.value)
    assert "\n" not in msg and "transformer.h.*.mlp.c_fc" in msg


def test_alpha_cast_to_output_dtype(tiny_llama_model):
    model, tok = tiny_llama_model
    model = model.to(torch.bfloat16)
    names = resolve_modules(model, ["model.layers.*.mlp.up_proj"])
    with hooked(model, {n: scale_output_hook(torch.full((32,), 0.5, dtype=torch.float64)) for n in names}):
        out = model(tok("the day", return_tensors="pt").input_ids).logits
    assert out.dtype == torch.bfloat16
