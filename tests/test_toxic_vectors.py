"""The toxic-vectors intervention: fit -> state -> attach scales exactly the chosen neurons; hook hygiene."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from toxbench.harness.core.errors import UsageError
from toxbench.interventions.base import State
from toxbench.interventions.toxic_vectors import ToxicVectors, load_vectors, neuron_scales, pre_hooked

torch.set_num_threads(1)


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab["<eos>"] = len(chars)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=257, n_positions=128,
                                      bos_token_id=256, eos_token_id=256)).eval()


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                        num_attention_heads=2, num_key_value_heads=2, vocab_size=257,
                                        bos_token_id=None, eos_token_id=256, pad_token_id=None)).eval()


MODELS = {"gpt2": (tiny_gpt2, "transformer.h.{}.mlp.c_proj"), "llama": (tiny_llama, "model.layers.{}.mlp.down_proj")}


def _state(pairs):
    return State({"layers": torch.tensor([p[0] for p in pairs]), "neurons": torch.tensor([p[1] for p in pairs])},
                 {"model_fingerprint": "fp"})


def _down_inputs(model, name, ids):
    got = {}
    h = dict(model.named_modules())[name].register_forward_pre_hook(lambda m, a: got.__setitem__("x", a[0].clone()))
    try:
        with torch.no_grad():
            logits = model(ids).logits
    finally:
        h.remove()
    return got["x"], logits


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_attach_scales_exactly_the_chosen_neurons(arch):
    make, pattern = MODELS[arch]
    model = make()
    ids = torch.tensor([[5, 9, 33, 70, 2]])
    base, base_logits = _down_inputs(model, pattern.format(0), ids)
    iv = ToxicVectors(state=_state([(0, 3), (0, 11), (1, 4)]), scale=0.25)
    with iv.attach(model):
        # a hook registered after ours sees the scaled input
        scaled, logits = _down_inputs(model, pattern.format(0), ids)
    torch.testing.assert_close(scaled[..., [3, 11]], 0.25 * base[..., [3, 11]])
    keep = [i for i in range(base.shape[-1]) if i not in (3, 11)]
    torch.testing.assert_close(scaled[..., keep], base[..., keep])
    assert not torch.allclose(logits, base_logits)
    # detached: back to the original model, no hooks of ours left
    after, after_logits = _down_inputs(model, pattern.format(0), ids)
    torch.testing.assert_close(after_logits, base_logits)
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_scale_one_is_identity_and_hooks_removed_on_error():
    model = tiny_llama()
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        ref = model(ids).logits
    mod = model.model.layers[1].mlp.down_proj
    foreign = mod.register_forward_pre_hook(lambda m, a: None)  # someone else's hook must survive
    with ToxicVectors(state=_state([(1, 0), (1, 5)]), scale=1.0).attach(model), torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref)
    with pytest.raises(RuntimeError, match="boom"):
        with ToxicVectors(state=_state([(1, 0)]), scale=0.0).attach(model):
            raise RuntimeError("boom")
    assert list(mod._forward_pre_hooks) == [foreign.id]
    foreign.remove()


def test_pre_hooked_validates_names_before_attaching():
    model = tiny_gpt2()
    with pytest.raises(UsageError, match="Did you mean"):
        with pre_hooked(model, {"transformer.h.0.mlp.c_proj": lambda m, a: None,
                                "transformer.h.0.mlp.c_prj": lambda m, a: None}):
            pass
    assert all(not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("pairs,msg", [([(5, 0)], "layers 0..1"), ([(0, 999)], "has 64 neurons")])
def test_state_from_another_model_is_refused(pairs, msg):
    with pytest.raises(UsageError, match=msg):
        neuron_scales(tiny_llama(), _state(pairs), 0.0)


def test_attach_without_state_is_a_usage_error():
    with pytest.raises(UsageError, match="fitted state"):
        with ToxicVectors().attach(tiny_llama()):
            pass


def _tiny_data(root: Path) -> Path:
    (root / "jigsaw").mkdir(parents=True)
    with open(root / "jigsaw" / "toy.csv", "w", newline="") as f:
        csv.writer(f).writerows([(f"calm tea {i}", 0) if i % 2 else (f"zzz qqq {i}!!", 1) for i in range(40)])
    (root / "rtp_lx").mkdir()
    (root / "rtp_lx" / "RTP_LX_EN.json").write_text(
        "".join(json.dumps({"Prompt": f"the cat {i}"}) + "\n" for i in range(5)))
    return root


def test_registry_build_fit_cache_and_reload(tmp_path):
    from toxbench.harness.core.models import model_fingerprint
    from toxbench.interventions import INTERVENTIONS, build

    assert INTERVENTIONS.get("toxic-vectors") is ToxicVectors
    model, tok = tiny_llama(), tiny_tokenizer()
    fp = model_fingerprint(model)
    data = _tiny_data(tmp_path / "data")
    args = (("jigsaw_file", "toy.csv"), ("n_new_tokens", 2), ("probe_limit", None), ("prompts", None),
            ("top_k", 30))
    iv = build("toxic-vectors", args, model=model, tokenizer=tok, model_fingerprint=fp, model_name="tiny",
               cache_dir=tmp_path / "cache", data_dir=data, log=lambda m: None)
    st = iv.state
    assert st.metadata["n_candidates"] == 30 and st.metadata["n_kept"] == len(st.tensors["layers"]) > 0
    assert (st.tensors["activation"] > 0).all() and st.tensors["probe.weight"].shape == (32,)
    assert st.metadata["probe_metrics"]["n_test"] == 4
    # cached: a second build loads the same state without fitting
    again = build("toxic-vectors", args, model=model, tokenizer=tok, model_fingerprint=fp, model_name="tiny",
                  cache_dir=tmp_path / "cache", data_dir=data, fit_missing=False)
    assert again.state.hash() == st.hash()
    path = tmp_path / "tv.safetensors"
    st.save(path)
    assert load_vectors(path, fp) == list(zip(st.tensors["layers"].tolist(), st.tensors["neurons"].tolist()))
    with pytest.raises(UsageError, match="fitted on model"):
        load_vectors(path, "another-model")
    spec = iv.spec()
    assert spec["name"] == "toxic-vectors" and spec["kind"] == "activation" and spec["state_hash"]
