"""Steering vectors: lm-eval's file format gives the same logits here as under lm-eval's own `steered` model; the
CAA-style fit; strength; hookpoints; one-line errors."""

from __future__ import annotations

import pytest
import torch

from test_aura import tiny_gpt2, tiny_tokenizer, write_sentences
from toxbench.harness.core.errors import UsageError
from toxbench.interventions import INTERVENTIONS, build
from toxbench.interventions.steer import Steer, full_name, read_steer_file, resolve_layers


@pytest.fixture(scope="module")
def tok():
    torch.set_num_threads(1)
    return tiny_tokenizer()


def lm_eval_file(path, width: int, action: str = "add", hookpoint: str = "layers.1", **extra):
    g = torch.Generator().manual_seed(3)
    torch.save({hookpoint: {"steering_vector": torch.randn(width, generator=g), "steering_coefficient": 2.5,
                            "action": action, "bias": extra.get("bias"), "head_index": None}}, path)
    return path


@pytest.mark.parametrize("action", ["add", "clamp"])
def test_same_logits_as_lm_eval_steered(tiny_llama_dir, tmp_path, action):
    from lm_eval.models.hf_steered import SteeredModel
    from transformers import AutoModelForCausalLM

    bias = torch.randn(16, generator=torch.Generator().manual_seed(4)) if action == "clamp" else None
    path = lm_eval_file(tmp_path / "vectors.pt", 16, action, bias=bias)
    theirs = SteeredModel(pretrained=str(tiny_llama_dir), steer_path=str(path), device="cpu", dtype="float32")
    ids = torch.tensor([[2, 5, 9, 14, 7, 3]])
    with torch.no_grad():
        expected = theirs._model_call(ids)
        model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
        plain = model(ids).logits
        ours = Steer(file=str(path))
        with ours.attach(model):
            got = model(ids).logits
        with Steer(file=str(path), strength=0).attach(model):
            zero = model(ids).logits
    assert not torch.allclose(plain, expected, atol=1e-4)
    assert torch.equal(got, expected)
    assert torch.equal(zero, plain)


def test_strength_scales_the_added_vector(tok, tmp_path):
    model = tiny_gpt2(len(tok))
    path = lm_eval_file(tmp_path / "v.pt", 16, hookpoint="h.0")
    seen = {}
    handle = model.transformer.h[1].register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].clone()))
    ids = torch.tensor([[4, 5, 6]])
    deltas = []
    for lam in (0.0, 1.0, 3.0):
        with torch.no_grad(), Steer(file=str(path), strength=lam).attach(model):
            model(ids)
        deltas.append(seen["x"])
    handle.remove()
    vec = torch.load(path, weights_only=True)["h.0"]["steering_vector"] * 2.5
    assert torch.allclose(deltas[1] - deltas[0], vec.expand_as(deltas[0]), atol=1e-5)
    assert torch.allclose(deltas[2] - deltas[0], 3 * vec.expand_as(deltas[0]), atol=1e-4)


def test_fit_is_the_difference_of_means_at_the_middle_layer(tok, tmp_path):
    from toxbench.interventions.aura import load_labelled_texts
    from toxbench.interventions.responses import collect_responses

    model = tiny_gpt2(len(tok))
    data = write_sentences(tmp_path / "s.csv")
    state = Steer(data=str(data), n_per_class=0).fit(model, tok, batch_size=4, model_fingerprint="fp", seed=0,
                                                     progress=False)
    assert list(state.metadata["hookpoints"]) == ["h.1"]  # 2 layers -> the middle is index 1
    texts, labels = load_labelled_texts(data, 0, 1, 0, 0)
    y = torch.tensor(labels, dtype=torch.bool)
    resp = collect_responses(model, tok, texts, y, ["transformer.h.1"], pooling="mean", skip_first=True,
                             progress=False)
    z = resp.matrix("transformer.h.1").double()
    assert torch.allclose(state.tensors["h.1/steering_vector"], (z[~y].mean(0) - z[y].mean(0)).float(), atol=1e-6)
    # written as safetensors, read back as a steering file with the same vectors
    state.save(tmp_path / "steer.safetensors")
    again = read_steer_file(tmp_path / "steer.safetensors")
    assert torch.equal(again.tensors["h.1/steering_vector"], state.tensors["h.1/steering_vector"])


def test_hookpoints_resolve_like_lm_eval(tok):
    model = tiny_gpt2(len(tok))
    assert full_name(model, "h.0") == "transformer.h.0"
    assert resolve_layers(model, "0,-1") == ["h.0", "h.1"]
    with pytest.raises(UsageError, match="h.0"):
        full_name(model, "layers.0")
    with pytest.raises(UsageError, match="2 decoder layers"):
        resolve_layers(model, "5")


def test_bad_steering_files_are_one_line_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        Steer(file=str(tmp_path / "missing.pt"))
    with pytest.raises(UsageError, match="steering file type"):
        Steer(file=str(tmp_path / "v.npy"))
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="tensors-only torch file"):
        Steer(file=str(tmp_path / "junk.pt"))
    torch.save({"layers.0": {"steering_vector": torch.ones(4), "action": "scale"}}, tmp_path / "act.pt")
    with pytest.raises(UsageError, match="clamp"):
        Steer(file=str(tmp_path / "act.pt"))
    (tmp_path / "sae.csv").write_text("loader,action,sparse_model,hookpoint,feature_index,steering_coefficient\n"
                                      "sparsify,add,EleutherAI/sae-pythia-70m-32k,layers.3,30,10.0\n")
    with pytest.raises(UsageError, match="sparsify"):
        Steer(file=str(tmp_path / "sae.csv"))
    with pytest.raises(UsageError, match="brings its own"):
        Steer(file=str(lm_eval_file(tmp_path / "ok.pt", 4)), layers="3")


def test_a_steering_file_needs_no_fit_and_its_content_is_its_identity(tok, tmp_path):
    model = tiny_gpt2(len(tok))
    a = lm_eval_file(tmp_path / "a.pt", 16, hookpoint="h.0")
    interv = build("steer+preprompt", [("file", str(a))], model=model, tokenizer=tok)
    assert interv.parts[0].state is not None
    copy = tmp_path / "elsewhere.pt"
    copy.write_bytes(a.read_bytes())
    assert Steer(file=str(copy)).spec()["state_hash"] == interv.parts[0].spec()["state_hash"]
    assert INTERVENTIONS.get("steer").strength_key == "strength"


def _tiny_gemma3(vocab_size: int):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=64,
                           bos_token_id=2, eos_token_id=3, pad_token_id=0)
    return Gemma3ForCausalLM(cfg).eval()


@pytest.mark.parametrize("arch,hookpoint", [("gpt2", "h.0"), ("llama", "layers.1"), ("llama", "layers.0.mlp.down_proj")])
def test_an_add_vector_folds_into_the_mlp_output_bias(tok, tmp_path, arch, hookpoint):
    """Export: the vector added to a layer's output is the same sum as a shift of the bias of the MLP's output
    projection (Llama gets its MLP biases through config.mlp_bias), so the folded checkpoint needs no hook."""
    from transformers import AutoModelForCausalLM

    from test_aura import tiny_llama
    from toxbench.interventions.fold import export_folded

    model = tiny_gpt2(len(tok)) if arch == "gpt2" else tiny_llama(len(tok))
    path = lm_eval_file(tmp_path / "v.pt", 16, hookpoint=hookpoint)
    steer = Steer(file=str(path), strength=0.7)
    ids = torch.tensor([[2, 5, 9, 14, 7, 3]])
    with torch.no_grad():
        with steer.attach(model):
            hooked = model(ids).logits
        out = export_folded(model, tok, steer, tmp_path / "export")
        folded = AutoModelForCausalLM.from_pretrained(out).eval()(ids).logits
        plain = model(ids).logits
    assert not torch.allclose(plain, hooked, atol=1e-4)
    assert torch.allclose(folded, hooked, atol=1e-5)


def test_what_cannot_fold_is_refused_in_one_line(tok, tmp_path):
    from toxbench.interventions.fold import export_folded

    gemma = _tiny_gemma3(len(tok))
    add = Steer(file=str(lm_eval_file(tmp_path / "a.pt", 16, hookpoint="layers.1")))
    with pytest.raises(UsageError, match="passes a norm") as e:  # Gemma's post-feed-forward norm
        export_folded(gemma, tok, add, tmp_path / "g")
    assert "\n" not in str(e.value) and not (tmp_path / "g").exists()
    model = tiny_gpt2(len(tok))
    clamp = Steer(file=str(lm_eval_file(tmp_path / "c.pt", 16, "clamp", hookpoint="h.0")))
    with pytest.raises(UsageError, match="depends on the activation"):
        export_folded(model, tok, clamp, tmp_path / "c")
