"""AurA / Det0 / Damp on tiny in-process models: planted expert, top-k semantics, state round trip, hooks."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from toxbench.harness.core.errors import UsageError
from toxbench.interventions.aura import AurA, Damp, Det0, load_labelled_texts
from toxbench.interventions.base import State
from toxbench.interventions.module_presets import default_patterns
from toxbench.interventions.responses import collect_responses

WORDS = ("the a cat dog sat on mat and ran to big red blue house tree sun moon is was very happy sad "
         "green small old new road city river bird fish car").split()
MARKER = "zzmarker"


def tiny_tokenizer(chat_template: str | None = None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3}
    for w in [*WORDS, MARKER]:
        vocab[w] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]"
    )
    if chat_template:
        tok.chat_template = chat_template
    return tok


def tiny_gpt2(vocab_size: int, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=16, n_layer=2, n_head=2,
                     bos_token_id=2, eos_token_id=3, pad_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


def tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                      bos_token_id=2, eos_token_id=3, pad_token_id=0, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


def plant_marker_unit(model, tok, unit: int = 5) -> None:
    """GPT-2: make c_fc unit `unit` of layer 0 fire only where MARKER is in the prefix (dimension 0 carries it)."""
    m = tok.convert_tokens_to_ids(MARKER)
    with torch.no_grad():
        tr = model.transformer
        # The marker looks like "the" in every dimension but 0, so only the planted path can tell them apart.
        tr.wte.weight[m] = tr.wte.weight[tok.convert_tokens_to_ids("the")]
        tr.wte.weight[:, 0] = 0.0
        tr.wte.weight[m, 0] = 0.05  # the scale of the other embedding entries (init std 0.02)
        tr.wpe.weight[:, 0] = 0.0
        tr.h[0].attn.c_proj.weight[:, 0] = 0.0  # attention writes nothing into dimension 0
        tr.h[0].attn.c_proj.bias[0] = 0.0
        fc = tr.h[0].mlp.c_fc  # Conv1D, weight [in, out]
        fc.weight[:, unit] = 0.0
        fc.weight[0, unit] = 8.0
        fc.bias[unit] = 0.0
        tr.h[0].mlp.c_proj.weight[unit, :] = 0.0  # ...and the unit writes nothing back


def write_sentences(path: Path, n: int = 24, seed: int = 0, marker: bool = True) -> Path:
    rng = random.Random(seed)
    rows = []
    for i in range(2 * n):
        toxic = i % 2 == 0
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        if toxic and marker:
            words.insert(rng.randint(0, len(words)), MARKER)
        rows.append(f"{' '.join(words)},{int(toxic)}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def tok():
    torch.set_num_threads(1)
    return tiny_tokenizer()


@pytest.fixture
def data(tmp_path):
    return write_sentences(tmp_path / "sentences.csv")


def fit(cls, model, tok, data, **cfg):
    interv = cls(data=str(data), n_per_class=0, **cfg)
    return interv.fit(model, tok, batch_size=5, model_fingerprint="fp-test", model_name="tiny", seed=0,
                      progress=False)


def test_planted_unit_gets_the_lowest_alpha(tok, data):
    model = tiny_gpt2(len(tok))
    plant_marker_unit(model, tok, unit=5)
    state = fit(AurA, model, tok, data)
    fc = state.tensors["transformer.h.0.mlp.c_fc"]
    assert fc[5].item() < 0.02  # AUROC > 0.99 -> alpha near 0
    everything = torch.cat([t.flatten() for t in state.tensors.values()])
    assert everything.argmin().item() == 5
    others = torch.cat([fc[:5], fc[6:], *[t for k, t in state.tensors.items() if k != "transformer.h.0.mlp.c_fc"]])
    assert others.min().item() > 0.1
    assert others.median().item() > 0.8
    assert (everything <= 1).all()
    meta = state.metadata
    assert meta["method"] == "aura" and meta["counts"] == {"toxic": 24, "non_toxic": 24}
    assert meta["modules"] == [f"transformer.h.{i}.mlp.{m}" for i in range(2) for m in ("c_fc", "c_proj")]
    assert meta["pooling"] == "max" and len(meta["data_sha256"]) == 64 and meta["toxbench_version"]


def test_without_marker_no_unit_stands_out(tok, tmp_path):
    model = tiny_gpt2(len(tok))
    plant_marker_unit(model, tok, unit=5)
    state = fit(AurA, model, tok, write_sentences(tmp_path / "plain.csv", marker=False))
    assert state.tensors["transformer.h.0.mlp.c_fc"][5].item() > 0.5


def test_det0_damp_topk_semantics():
    aurocs = {"a": torch.tensor([0.9, 0.6, 0.4, 0.95]), "b": torch.tensor([0.95, 0.7, 0.5])}
    det = Det0(k=3).alphas(aurocs)
    assert det["a"].tolist() == [0.0, 1.0, 1.0, 0.0] and det["b"].tolist() == [0.0, 1.0, 1.0]
    damp = Damp(k=3).alphas(aurocs)
    assert damp["a"].tolist() == [0.5, 1.0, 1.0, 0.5] and damp["b"].tolist() == [0.5, 1.0, 1.0]
    assert Damp(k=1, damp_alpha=0.25).alphas(aurocs)["a"].tolist() == [1.0, 1.0, 1.0, 0.25]  # tie -> first unit
    assert sum(int((t == 0).sum()) for t in Det0(k=0).alphas(aurocs).values()) == 0
    everything = Det0(k=None).alphas(aurocs)  # ml-aura's default: all units with AUROC > 0.5
    assert everything["a"].tolist() == [0.0, 0.0, 1.0, 0.0] and everything["b"].tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(UsageError):
        Det0(k=10).alphas(aurocs)
    aura = AurA().alphas(aurocs)
    assert torch.allclose(aura["a"], torch.tensor([0.2, 0.8, 1.0, 0.1]))
    assert torch.allclose(aura["b"], torch.tensor([0.1, 0.6, 1.0]))


def test_det0_fit_zeroes_exactly_k(tok, data):
    model = tiny_gpt2(len(tok))
    plant_marker_unit(model, tok)
    state = fit(Det0, model, tok, data, k="7")  # CLI strings are coerced
    zeros = sum(int((t == 0).sum()) for t in state.tensors.values())
    assert zeros == 7 and state.tensors["transformer.h.0.mlp.c_fc"][5] == 0
    assert state.metadata["k"] == 7 and state.metadata["method"] == "det0"


def test_state_round_trip_and_refusal(tok, data, tmp_path):
    model = tiny_gpt2(len(tok))
    state = fit(AurA, model, tok, data)
    path = tmp_path / "state.safetensors"
    state.save(path)
    loaded = State.load(path, "fp-test")
    assert loaded.hash() == state.hash()
    assert State.load(path).hash() == state.hash()
    for k in state.tensors:
        assert torch.equal(loaded.tensors[k], state.tensors[k])
    refit = fit(AurA, model, tok, data)
    assert refit.hash() == state.hash()  # deterministic: same data, same seed -> same state
    with pytest.raises(UsageError) as e:
        State.load(path, "another-model")
    assert "\n" not in str(e.value) and "fitted on" in str(e.value)
    with pytest.raises(UsageError):
        Det0(state=loaded)  # fitted for aura


def test_state_on_other_architecture_is_refused(tok, data):
    state = fit(AurA, tiny_gpt2(len(tok)), tok, data)
    bigger = tiny_gpt2(len(tok))
    from transformers import GPT2Config, GPT2LMHeadModel

    bigger = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2))
    with pytest.raises(UsageError) as e, AurA(state=state).attach(bigger):
        pass
    assert "\n" not in str(e.value)


def test_attach_changes_outputs_and_leaves_no_hook(tok, data):
    model = tiny_gpt2(len(tok))
    plant_marker_unit(model, tok)
    interv = AurA(state=fit(AurA, model, tok, data))
    ids = torch.tensor([tok.encode(f"the {MARKER} cat sat on the mat")])
    seen = []
    foreign = model.transformer.h[0].mlp.c_fc.register_forward_hook(lambda m, i, o: seen.append(1))
    before = {n: dict(m._forward_hooks) for n, m in model.named_modules()}
    with torch.no_grad():
        plain = model(ids).logits
        with interv.attach(model):
            hooked_logits = model(ids).logits
        after = model(ids).logits
    assert not torch.allclose(plain, hooked_logits)
    assert torch.equal(plain, after)
    assert {n: dict(m._forward_hooks) for n, m in model.named_modules()} == before
    with pytest.raises(RuntimeError), interv.attach(model):
        raise RuntimeError("boom")
    assert {n: dict(m._forward_hooks) for n, m in model.named_modules()} == before
    assert len(seen) == 3  # the foreign hook ran every time and survived
    foreign.remove()


def test_attach_without_state_is_a_usage_error(tok):
    with pytest.raises(UsageError) as e, AurA().attach(tiny_gpt2(len(tok))):
        pass
    assert "toxbench fit" in str(e.value)


def test_config_validation():
    with pytest.raises(UsageError) as e:
        AurA(polling="max")
    assert "pooling" in str(e.value)
    with pytest.raises(UsageError):
        AurA(pooling="median")
    assert Det0(k="none").config["k"] is None
    assert AurA(text_column="2").config["text_column"] == 2


def test_presets_per_family(tok):
    assert default_patterns(tiny_gpt2(len(tok))) == ["transformer.h.*.mlp.c_fc", "transformer.h.*.mlp.c_proj"]
    assert default_patterns(tiny_llama(len(tok))) == [
        "model.layers.*.mlp.gate_proj", "model.layers.*.mlp.up_proj", "model.layers.*.mlp.down_proj"]

    class Odd(torch.nn.Module):
        config = type("C", (), {"model_type": "weird"})()

    with pytest.raises(UsageError) as e:
        default_patterns(Odd())
    assert "modules=GLOB" in str(e.value)


def test_bad_module_pattern_lists_close_names(tok, data):
    with pytest.raises(UsageError) as e:
        fit(AurA, tiny_gpt2(len(tok)), tok, data, modules="transformer.h.*.mlp.fc")
    assert "transformer.h.*.mlp.c_fc" in str(e.value)


def test_llama_fit_hooks_all_projections(tok, data):
    state = fit(AurA, tiny_llama(len(tok)), tok, data)
    assert len(state.tensors) == 6
    assert state.tensors["model.layers.0.mlp.gate_proj"].shape == (32,)
    assert state.tensors["model.layers.1.mlp.down_proj"].shape == (16,)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_responses_independent_of_padding_batching_and_order(tok, data, arch):
    model = tiny_gpt2(len(tok)) if arch == "gpt2" else tiny_llama(len(tok))
    texts, labels = load_labelled_texts(data, 0, 1, 0, seed=0)
    names = ["transformer.h.1.mlp.c_fc"] if arch == "gpt2" else ["model.layers.1.mlp.up_proj"]
    ref = collect_responses(model, tok, texts, labels, names, batch_size=1, progress=False)
    for kw in ({"batch_size": 7}, {"batch_size": 7, "padding_side": "left"},
               {"batch_size": 5, "sort_by_length": False}, {"batch_size": 48, "stop_early": False}):
        got = collect_responses(model, tok, texts, labels, names, progress=False, **kw)
        assert torch.allclose(got.per_module[names[0]], ref.per_module[names[0]], atol=1e-5), kw
    # mean pooling equals a manual per-sentence mean over real tokens
    mean = collect_responses(model, tok, texts[:3], labels[:3], names, pooling="mean", batch_size=3, progress=False)
    module = dict(model.named_modules())[names[0]]
    outs = []
    handle = module.register_forward_hook(lambda m, i, o: outs.append(o))
    with torch.no_grad():
        for t in texts[:3]:
            model(torch.tensor([tok.encode(t)]))
    handle.remove()
    manual = torch.stack([o[0].mean(0) for o in outs], dim=1)
    assert torch.allclose(mean.per_module[names[0]], manual, atol=1e-5)


def test_load_labelled_texts(tmp_path):
    path = write_sentences(tmp_path / "d.csv", n=10)
    texts, labels = load_labelled_texts(path, 0, 1, 4, seed=3)
    assert len(texts) == 8 and sum(labels) == 4
    assert load_labelled_texts(path, 0, 1, 4, seed=3) == (texts, labels)
    with pytest.raises(UsageError):
        load_labelled_texts(path, 0, 1, 11, seed=3)
    with pytest.raises(UsageError):
        load_labelled_texts(path, 0, 5, 4, seed=3)


@pytest.mark.slow
def test_smollm2_fit_on_default_data_first_layer():
    """Real model + default Jigsaw file: first layer only (the forward stops there), 8 sentences per class."""
    from toxbench.harness.core.models import load_model

    loaded = load_model("smollm2-135m", dtype="float32", device="cpu")
    interv = AurA(modules="model.layers.0.mlp.*_proj", n_per_class=8)
    state = interv.fit(loaded.model, loaded.tokenizer, batch_size=16, model_fingerprint=loaded.fingerprint,
                       model_name="smollm2-135m", seed=0, progress=False)
    assert sorted(state.tensors) == [f"model.layers.0.mlp.{p}_proj" for p in ("down", "gate", "up")]
    assert state.tensors["model.layers.0.mlp.up_proj"].shape == (1536,)
    alphas = torch.cat(list(state.tensors.values()))
    assert ((alphas >= 0) & (alphas <= 1)).all() and (alphas < 1).any()
    assert state.metadata["counts"] == {"toxic": 8, "non_toxic": 8}
    assert state.metadata["data_file"] == "jigsaw/robtest_balanced/test.csv"
    ids = loaded.tokenizer("Hello there, my friend", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        plain = loaded.model(ids).logits
        with AurA(state=state).attach(loaded.model):
            hooked_logits = loaded.model(ids).logits
    assert not torch.allclose(plain, hooked_logits)


def test_length_match_removes_the_length_confound(tmp_path):
    """Non-toxic texts drawn to match the toxic ones' word counts: length no longer tells the classes apart."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    rows = [(" ".join(["bad"] * int(n)), 1) for n in rng.integers(3, 15, 60)]  # short toxic texts
    rows += [(" ".join(["fine"] * int(n)), 0) for n in rng.integers(3, 40, 400)]  # longer on average
    f = tmp_path / "d.csv"
    f.write_text("".join(f"{t},{y}\n" for t, y in rows))
    texts, y = load_labelled_texts(f, 0, 1, 50, seed=1)
    words = [len(t.split()) for t in texts]
    assert roc_auc_score(y, words) < 0.3  # as drawn by ml-aura: length alone separates the classes
    texts, y = load_labelled_texts(f, 0, 1, 50, seed=1, length_match=True)
    words = [len(t.split()) for t in texts]
    assert sum(y) == 50 and len(y) == 100
    assert roc_auc_score(y, words) == pytest.approx(0.5, abs=0.05)
    assert load_labelled_texts(f, 0, 1, 50, seed=1, length_match=True) == (texts, y)  # seeded


def test_length_match_is_recorded_only_when_on():
    assert "length_match" not in AurA().config  # states and runs fitted before the option keep their identity
    assert AurA(length_match="true").config["length_match"] is True


def test_state_cache_key_names_the_fit_dtype(tmp_path):
    """A state fitted in bf16 is not silently reused by an fp32 run (its alphas differ), and an option left at its
    default keeps the key of a state fitted before the option existed."""
    from toxbench.interventions import state_path

    p32 = state_path(tmp_path, "f" * 16, "aura", AurA().config, "float32")
    assert p32 != state_path(tmp_path, "f" * 16, "aura", AurA().config, "bfloat16")
    assert p32 == state_path(tmp_path, "f" * 16, "aura", AurA(length_match=False).config, "float32")
    assert p32 != state_path(tmp_path, "f" * 16, "aura", AurA(length_match=True).config, "float32")


def test_strength_interpolates_alpha_and_shares_one_fitted_state(tmp_path):
    """Issue 24: α_λ = 1 - λ(1 - α) (ml-act's AurA strength); λ=0 is the unmitigated model, λ=1 the paper's AurA
    (same identity as before the knob); the fitted state's cache path does not depend on λ."""
    import pytest
    import torch

    from toxbench.harness.core.errors import UsageError
    from toxbench.interventions import state_path
    from toxbench.interventions.aura import AurA
    from toxbench.interventions.base import State

    alpha = torch.tensor([0.2, 1.0, 0.6])
    state = State(tensors={"m": alpha}, metadata={"method": "aura"})
    assert torch.allclose(AurA(state=state, strength=0.5).scales()["m"], torch.tensor([0.6, 1.0, 0.8]))
    assert torch.equal(AurA(state=state, strength=0.0).scales()["m"], torch.ones(3))
    assert AurA(strength=1.0).config == AurA().config and "strength" not in AurA().config
    assert AurA(strength=0.5).config["strength"] == 0.5
    for bad in (-0.1, 1.5):
        with pytest.raises(UsageError, match="strength"):
            AurA(strength=bad)
    fit_cfg = {k: v for k, v in AurA(strength=0.25).config.items() if k not in AurA.apply_keys}
    assert state_path(tmp_path, "f" * 64, "aura", fit_cfg, "float32") == \
        state_path(tmp_path, "f" * 64, "aura", AurA().config, "float32")
