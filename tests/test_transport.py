# ruff: noqa: F811 - the fixtures imported from test_aura are test arguments here
"""Linear-AcT / Mean-AcT (apple/ml-act's linear_ot / mean_ot) on tiny in-process models: the fitted maps against
a direct computation, strength 0, the range mask at its edges, incremental vs at-once estimation, folded export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_aura import MARKER, data, fit, tiny_gpt2, tiny_llama, tok  # noqa: F401 - fixtures data and tok
from toxbench.harness.core.errors import UsageError
from toxbench.interventions import INTERVENTIONS
from toxbench.interventions.fold import export_folded, folding_maps
from toxbench.interventions.forward_hooks import hooked
from toxbench.interventions.module_presets import TRANSPORT_PRESETS, default_patterns
from toxbench.interventions.responses import collect_responses
from toxbench.interventions.transport import LinearAcT, MeanAcT
from toxbench.interventions.transport_fit import fit_map, parse_quantiles, transport, transport_hook


def logits(model, tok, interv=None):
    enc = tok([f"the cat {MARKER} sat on the mat", "a big red house", "sun moon"], padding=True,
              return_tensors="pt")
    with torch.no_grad():
        if interv is None:
            return model(**enc).logits
        with interv.attach(model):
            return model(**enc).logits


def test_linear_map_equals_least_squares_on_sorted_pairs():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(40, 6, generator=g) * torch.arange(1, 7) + 3
    labels = torch.tensor([i % 2 == 0 for i in range(40)])
    m = fit_map(z, labels, "linear", "q_0_100")
    src, dst = z[labels].numpy().astype(np.float64), z[~labels].numpy().astype(np.float64)
    for u in range(6):
        slope, intercept = np.polyfit(np.sort(src[:, u]), np.sort(dst[:, u]), 1)
        assert m["omega"][u].item() == pytest.approx(slope, rel=1e-5)
        assert m["beta"][u].item() == pytest.approx(intercept, rel=1e-5, abs=1e-5)
        assert m["lo"][u].item() == pytest.approx(src[:, u].min()) and m["hi"][u].item() == pytest.approx(src[:, u].max())


def test_mean_map_is_the_mean_shift_and_skips_constant_units():
    z = torch.randn(20, 3, generator=torch.Generator().manual_seed(1))
    z[:, 2] = 5.0  # no spread: ml-act's std mask leaves it alone
    labels = torch.tensor([i < 10 for i in range(20)])
    m = fit_map(z, labels, "mean", "q_all")
    assert set(m) == {"omega", "beta"} and torch.equal(m["omega"], torch.ones(3))
    expect = (z[~labels].double().mean(0) - z[labels].double().mean(0)).float()
    assert torch.allclose(m["beta"][:2], expect[:2]) and m["beta"][2].item() == 0.0


def test_unequal_classes_are_balanced_before_pairing():
    z = torch.arange(14, dtype=torch.float32).reshape(7, 2)
    labels = torch.tensor([True, True, True, False, False, True, True])
    m = fit_map(z, labels, "linear", "q_all")  # 2 of each class used; no error
    assert torch.isfinite(m["omega"]).all()
    with pytest.raises(UsageError, match="at least 2 sentences of each class"):
        fit_map(z[:3], labels[:3], "linear", "q_all")


def test_range_mask_edges():
    m = {"omega": torch.tensor([2.0]), "beta": torch.tensor([1.0]), "lo": torch.tensor([0.0]),
         "hi": torch.tensor([1.0])}
    z = torch.tensor([[-0.5], [0.0], [0.5], [1.0], [1.5]])
    out = transport(z, m, 1.0)
    # strictly inside (lo, hi) only, as ml-act's (q_lo < z) & (z < q_hi)
    assert out.flatten().tolist() == [-0.5, 0.0, 2.0, 1.0, 1.5]
    half = transport(z, m, 0.5)
    assert half[2].item() == pytest.approx(0.5 * 0.5 + 0.5 * 2.0)
    assert transport(z, {k: v for k, v in m.items() if k in ("omega", "beta")}, 1.0).flatten().tolist() == \
        [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("bad", ["q_5", "q_90_10", "q_0_101", "all"])
def test_bad_quantiles_are_one_line_errors(bad):
    with pytest.raises(UsageError, match="q_all"):
        parse_quantiles(bad)
    with pytest.raises(UsageError):
        LinearAcT(quantiles=bad)


@pytest.mark.parametrize("cls", [LinearAcT, MeanAcT])
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_strength_zero_leaves_logits_and_full_strength_changes_them(tok, data, cls, arch):
    model = tiny_gpt2(len(tok)) if arch == "gpt2" else tiny_llama(len(tok))
    state = fit(cls, model, tok, data)
    plain = logits(model, tok)
    assert torch.equal(logits(model, tok, cls(state=state, strength=0)), plain)
    assert not torch.allclose(logits(model, tok, cls(state=state, strength=1)), plain, atol=1e-5)
    assert torch.equal(logits(model, tok), plain)  # hooks gone


def test_presets_follow_ml_act(tok):
    gpt2, llama = tiny_gpt2(len(tok)), tiny_llama(len(tok))
    assert default_patterns(gpt2, TRANSPORT_PRESETS) == TRANSPORT_PRESETS["gpt2"]
    assert default_patterns(llama, TRANSPORT_PRESETS) == ["model.layers.*.mlp.gate_proj", "model.layers.*.mlp.up_proj",
                                                           "model.layers.*.mlp.down_proj"]
    assert TRANSPORT_PRESETS["gemma2"] == ["model.layers.*.post_attention_layernorm",
                                          "model.layers.*.post_feedforward_layernorm"]


def test_incremental_fits_each_module_on_the_transported_model(tok, data):
    model = tiny_gpt2(len(tok))
    names = ["transformer.h.0.ln_2", "transformer.h.1.ln_2"]
    incr = fit(LinearAcT, model, tok, data, modules=",".join(names), mode="incremental")
    once = fit(LinearAcT, model, tok, data, modules=",".join(names), mode="atonce")
    first = {k: incr.tensors[f"{names[0]}/{k}"] for k in ("omega", "beta", "lo", "hi")}
    for k, t in first.items():  # the first module sees the same model either way
        assert torch.allclose(t, once.tensors[f"{names[0]}/{k}"], atol=1e-5)
    # the second, by hand: responses with the first map attached
    from toxbench.interventions.aura import load_labelled_texts

    texts, labels = load_labelled_texts(data, 0, 1, 0, 0)
    y = torch.tensor(labels, dtype=torch.bool)
    with hooked(model, {names[0]: transport_hook(first, 1.0)}):
        resp = collect_responses(model, tok, texts, y, [names[1]], batch_size=5, pooling="mean", skip_first=True,
                                 progress=False)
    by_hand = fit_map(resp.matrix(names[1]), y, "linear", "q_0_100")
    for k, t in by_hand.items():
        assert torch.allclose(incr.tensors[f"{names[1]}/{k}"], t, atol=1e-4)
        assert not torch.allclose(once.tensors[f"{names[1]}/{k}"], t, atol=1e-4) or k in ("lo", "hi")
    assert incr.metadata["config"]["mode"] == "incremental" and "strength" not in incr.metadata["config"]


@pytest.mark.parametrize("arch,cls,cfg", [("gpt2", MeanAcT, {}), ("llama", MeanAcT, {}),
                                          ("gpt2", LinearAcT, {"quantiles": "q_all"}),
                                          ("llama", LinearAcT, {"quantiles": "q_all", "strength": 0.6})])
def test_folded_export_reproduces_hooked_logits(tok, data, tmp_path, arch, cls, cfg):
    from transformers import AutoModelForCausalLM

    model = tiny_gpt2(len(tok)) if arch == "gpt2" else tiny_llama(len(tok))
    fit_cfg = {k: v for k, v in cfg.items() if k != "strength"}
    interv = cls(state=fit(cls, model, tok, data, **fit_cfg), **cfg)
    hooked_logits = logits(model, tok, interv)
    out = export_folded(model, tok, interv, tmp_path / "export")
    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    if arch == "llama":  # the MLP shifts need biases: config.mlp_bias, which any loader builds
        assert loaded.config.mlp_bias is True
    assert torch.allclose(logits(loaded, tok), hooked_logits, atol=1e-4)


def test_range_masked_linear_act_refuses_export(tok, data, tmp_path):
    model = tiny_gpt2(len(tok))
    interv = LinearAcT(state=fit(LinearAcT, model, tok, data))
    with pytest.raises(UsageError, match="quantiles=q_all"):
        folding_maps(interv)


def test_state_of_another_method_or_model_is_refused(tok, data):
    model = tiny_gpt2(len(tok))
    state = fit(MeanAcT, model, tok, data)
    with pytest.raises(UsageError, match="fitted for 'mean'"):
        LinearAcT(state=state)
    other = tiny_gpt2(len(tok))
    other.transformer.h[0].ln_1 = torch.nn.LayerNorm(8)
    with pytest.raises(UsageError, match="another model"):
        logits(other, tok, MeanAcT(state=state))


def test_registered_with_a_strength_knob():
    for name in ("linear-act", "mean-act"):
        cls = INTERVENTIONS.get(name)
        assert cls.strength_key == "strength" and cls.apply_keys == ("strength",)
    with pytest.raises(UsageError, match="strength"):
        MeanAcT(strength=-1)
    with pytest.raises(UsageError, match="incremental"):
        LinearAcT(mode="layerwise")


def test_an_error_in_one_batch_ends_every_thread(tok, data, monkeypatch):
    import toxbench.interventions.transport_fit as tf

    calls = []

    def failing(z, labels, *a):
        calls.append(1)
        if len(calls) == 2:
            raise UsageError("boom at the second module")
        return fit_map(z, labels, *a)

    monkeypatch.setattr(tf, "fit_map", failing)
    with pytest.raises(UsageError, match="boom"):
        fit(LinearAcT, tiny_gpt2(len(tok)), tok, data, mode="incremental")


def test_pooling_leaves_out_the_first_token():
    from toxbench.interventions.responses import pool_tokens, without_first_token

    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 0, 0]])  # right-, left-padded, one token
    kept = without_first_token(mask)
    assert kept.int().tolist() == [[0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 0]]
    out = torch.tensor([[1000.0, 1, 3, 9], [9, 1000, 2, 4], [7, 9, 9, 9]]).unsqueeze(-1)
    assert pool_tokens(out, kept, "mean").flatten().tolist() == [2.0, 3.0, 7.0]


def test_composes_with_preprompt_and_folds_on_top_of_aura(tok, data, tmp_path):
    """`mean-act+preprompt` runs the map with the pre-prompt (which rewrites contexts, not activations); `aura+mean-act`
    folds into one export equal to the hooked composition (the later map sees the earlier one's output)."""
    from transformers import AutoModelForCausalLM

    from test_fold import random_state
    from toxbench.interventions.aura import AurA
    from toxbench.interventions.compose import Composite
    from toxbench.interventions.preprompt import PrePrompt

    model = tiny_gpt2(len(tok))
    mean = MeanAcT(state=fit(MeanAcT, model, tok, data))
    alone = logits(model, tok, mean)
    both = Composite([mean, PrePrompt()])
    assert torch.allclose(logits(model, tok, both), alone) and [p.name for p in both.parts] == ["mean-act", "preprompt"]
    aura = AurA(state=random_state(model, seed=4))
    chain = Composite([aura, MeanAcT(state=mean.state, strength=0.5)])
    hooked_logits = logits(model, tok, chain)
    out = export_folded(model, tok, chain, tmp_path / "chain")
    assert torch.allclose(logits(AutoModelForCausalLM.from_pretrained(out).eval(), tok), hooked_logits, atol=1e-4)
