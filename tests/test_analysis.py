"""`toxbench analyze`: probe, toxic value vectors, activation shift, retrieval -- on tiny in-process models.

The data dir here is synthetic (bland words), so the tests are fast and never touch offensive text; one test
reads the real shared data only for its layout.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from toxbench.harness.measure.analysis import probe as P
from toxbench.harness.measure.analysis import retrieval as R
from toxbench.harness.measure.analysis import value_vectors as TV
from toxbench.harness.measure.analysis.activations import activation_shift, resolve_languages
from toxbench.harness.core.errors import UsageError

torch.set_num_threads(1)


# -- tiny models ---------------------------------------------------------------------------------------------------
def tiny_tokenizer():
    """Byte-level, no merges (any language), with a BOS like Gemma's, so special-token pooling is exercised."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab["<eos>"], vocab["<bos>"] = len(chars), len(chars) + 1
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", bos_token="<bos>")


VOCAB = 258


def tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=256,
                                      bos_token_id=257, eos_token_id=256)).eval()


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                        num_attention_heads=2, num_key_value_heads=2, vocab_size=VOCAB,
                                        bos_token_id=257, eos_token_id=256, pad_token_id=None)).eval()


MODELS = {"gpt2": tiny_gpt2, "llama": tiny_llama}


def tiny_data_dir(root: Path, n_jigsaw: int = 60) -> Path:
    """jigsaw (both layouts), rtp_lx (EN, DE, JA) and translated_pairwise_data (en, de, zh) with bland text."""
    rng = np.random.default_rng(0)
    (root / "jigsaw" / "kaggle").mkdir(parents=True)
    (root / "jigsaw" / "pairs").mkdir(parents=True)
    good, bad = ["sunny calm garden", "nice tea today", "lovely music"], ["zzz qqq xxx", "qqq zzz!!", "xxx zzz qqq!"]
    rows = [(f"{good[i % 3]} {i}", 0) if i % 2 == 0 else (f"{bad[i % 3]} {i}", 1) for i in range(n_jigsaw)]
    with open(root / "jigsaw" / "pairs" / "test.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    with open(root / "jigsaw" / "kaggle" / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "comment_text", "toxic", "severe_toxic"])
        w.writerows([(i, t, lab, 0) for i, (t, lab) in enumerate(rows)])
    (root / "rtp_lx").mkdir()
    for lang, words in {"EN": "the cat sat", "DE": "die Katze sass", "JA": "猫が座った"}.items():
        with open(root / "rtp_lx" / f"RTP_LX_{lang}.json", "w", encoding="utf-8") as f:
            for i in range(6):
                f.write(json.dumps({"Prompt": f"{words} {rng.integers(100)}", "Index": i}, ensure_ascii=False) + "\n")
    (root / "translated_pairwise_data").mkdir()
    en = [f"sentence number {i} about {w}" for i, w in enumerate(["cats", "tea", "rain", "music", "bread", "maps"])]
    langs = {"en": en, "de": [s.replace("sentence number", "Satz Nummer") for s in en], "zh": en}
    for lang, sents in langs.items():
        with open(root / "translated_pairwise_data" / f"dpo_toxicity_pairwise_{lang}_200.jsonl", "w") as f:
            f.writelines(json.dumps({"Prompt": s}) + "\n" for s in sents)
    return root


@pytest.fixture
def data(tmp_path):
    return tiny_data_dir(tmp_path / "data")


# -- data readers --------------------------------------------------------------------------------------------------
def test_read_jigsaw_both_layouts_and_stratified_limit(data):
    t1, l1 = P.read_jigsaw(data, "pairs/test.csv")
    t2, l2 = P.read_jigsaw(data, "kaggle/train.csv")
    assert t1 == t2 and l1.tolist() == l2.tolist() and len(t1) == 60
    t3, l3 = P.read_jigsaw(data, "pairs/test.csv", limit=20)
    assert len(t3) == 20 and l3.sum() == 10  # the file is balanced, so is the sample
    with pytest.raises(UsageError, match="pairs/test.csv"):
        P.read_jigsaw(data, "nope.csv")  # the error lists the labelled files there


def test_real_data_layout():
    from toxbench.harness.core.paths import data_dir

    try:
        root = data_dir()
    except UsageError:
        pytest.skip("no shared data dir")
    if not (root / "jigsaw" / P.JIGSAW_DEFAULT).is_file():
        pytest.skip("no Jigsaw file")
    texts, labels = P.read_jigsaw(root, limit=50)
    assert len(texts) == 50 and 0 < labels.sum() < 50
    assert len(TV.read_rtp_lx(root, "en", limit=5)) == 5  # case-insensitive language code
    assert "zh" in R.parallel_languages(root) and len(R.read_parallel(root, "de")) == 200
    assert len(resolve_languages(root, None)) == 17


# -- probe ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", sorted(MODELS))
def test_pooled_hidden_states_batch_invariant_and_skip_bos(arch):
    model, tok = MODELS[arch](), tiny_tokenizer()
    texts = ["ab", "a much longer text to force padding", "c"]
    batched = P.pooled_hidden_states(model, tok, texts, batch_size=3, progress=False)
    single = torch.stack([P.pooled_hidden_states(model, tok, [t], batch_size=1, progress=False)[0] for t in texts])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)
    ids = tok(["ab"])["input_ids"]
    assert ids[0][0] == 257  # BOS added ...
    hs = model.base_model(torch.tensor(ids)).last_hidden_state[0]
    torch.testing.assert_close(batched[0], hs[1:].mean(0), atol=1e-5, rtol=1e-4)  # ... and left out of the pool
    layers = P.pooled_hidden_states(model, tok, texts, all_layers=True, batch_size=2, progress=False)
    assert layers.shape == (3, 3, 32)  # embeddings + 2 layers
    torch.testing.assert_close(layers[-1], batched, atol=1e-5, rtol=1e-4)  # last = post final norm


def test_fit_probe_finds_planted_direction():
    rng = np.random.default_rng(0)
    direction = torch.tensor(rng.normal(size=16), dtype=torch.float32)
    x = torch.tensor(rng.normal(size=(400, 16)), dtype=torch.float32)
    labels = (x @ direction > 0).numpy().astype(np.int64)
    probe, held = P.fit_probe(x, labels, test_frac=0.25, seed=0)
    assert probe.metrics["n_test"] == 100 and probe.metrics["test_accuracy"] > 0.9
    assert torch.nn.functional.cosine_similarity(probe.weight, direction, dim=0) > 0.9
    assert held["scores"].shape == (100,)
    # random labels: the held-out accuracy must not look good
    probe2, _ = P.fit_probe(x, rng.integers(0, 2, 400), test_frac=0.25, seed=0)
    assert probe2.metrics["test_accuracy"] < 0.7


def test_probe_save_load_and_fingerprint_guard(tmp_path):
    probe = P.ToxicityProbe(torch.arange(4.0), 0.0, {"test_accuracy": 0.9}, {"model_fingerprint": "abc"})
    probe.save(tmp_path / "p.safetensors")
    back = P.ToxicityProbe.load(tmp_path / "p.safetensors", "abc")
    assert back.weight.tolist() == [0, 1, 2, 3] and back.metrics["test_accuracy"] == 0.9
    with pytest.raises(UsageError, match="fitted on model"):
        P.ToxicityProbe.load(tmp_path / "p.safetensors", "other")


def test_train_probe_separates_tiny_data(data):
    model, tok = tiny_llama(), tiny_tokenizer()
    probe, _ = P.train_probe(model, tok, data, P.ProbeSettings(jigsaw_file="pairs/test.csv", limit=None,
                                                               test_frac=0.25), progress=False)
    assert probe.metrics["n_test"] == 15 and probe.metrics["train_accuracy"] > 0.9


# -- toxic value vectors -------------------------------------------------------------------------------------------
def _plant(model, layer: int, neuron: int, vec: torch.Tensor) -> None:
    site = {s.layer: s for s in TV.mlp_sites(model)}[layer]
    mod = dict(model.named_modules())[site.name]
    with torch.no_grad():
        if type(mod).__name__ == "Conv1D":
            mod.weight[neuron] = vec  # GPT-2: rows
        else:
            mod.weight[:, neuron] = vec  # Llama: columns


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_top_value_vectors_and_vocab_projection_find_planted_vector(arch):
    model, tok = MODELS[arch](), tiny_tokenizer()
    token = tok.convert_tokens_to_ids("Z")
    direction = model.get_output_embeddings().weight[token].detach().clone()
    _plant(model, 1, 5, 3 * direction)
    _plant(model, 0, 7, direction + 0.2 * direction.norm() * torch.randn(32) / 32**0.5)
    top = TV.top_value_vectors(model, direction, k=3)
    assert top[0][:2] == (1, 5) and top[0][2] == pytest.approx(1.0, abs=1e-5)
    assert top[1][:2] == (0, 7)
    assert TV.vocab_projection(model, tok, 1, 5, topk=3)[0] == "Z"


def _reference_activations(model, tok, prompt, neurons, n):
    """No cache, batch 1, full recompute each step: what the batched KV-cache loop must reproduce."""
    from toxbench.interventions.toxic_vectors import pre_hooked

    sites = {s.layer: s for s in TV.mlp_sites(model)}
    got = {}
    hooks = {sites[la].name: (lambda la: lambda m, a: got.__setitem__(la, a[0][0, -1].clone()))(la)
             for la in {la for la, _ in neurons}}
    ids = torch.tensor(tok([prompt])["input_ids"])
    acc = np.zeros(len(neurons))
    with pre_hooked(model, hooks), torch.no_grad():
        for _ in range(n):
            logits = model(ids).logits
            acc += [float(got[la][nr]) for la, nr in neurons]
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
    return acc / n


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_greedy_activations_match_uncached_reference_with_left_padding(arch):
    model, tok = MODELS[arch](), tiny_tokenizer()
    prompts = ["x", "a rather longer prompt here", "mid size"]
    neurons = [(0, 3), (1, 10), (1, 2)]
    got = TV.greedy_neuron_activations(model, tok, prompts, neurons, n_new_tokens=4, batch_size=3, progress=False)
    want = np.stack([_reference_activations(model, tok, p, neurons, 4) for p in prompts])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
    with pytest.raises(UsageError, match="does not exist"):
        TV.greedy_neuron_activations(model, tok, prompts, [(9, 0)], n_new_tokens=1, progress=False)


def test_find_toxic_vectors_keeps_positive_only():
    model, tok = tiny_gpt2(), tiny_tokenizer()
    probe = P.ToxicityProbe(torch.randn(32))
    vs = TV.find_toxic_vectors(model, tok, probe, ["hello", "world!"], top_k=12, n_new_tokens=3, progress=False)
    assert len(vs) == 12 and [v.rank for v in vs] == list(range(1, 13))
    assert all(v.kept == (v.activation > 0) for v in vs)
    assert [v.cosine for v in vs] == sorted((v.cosine for v in vs), reverse=True)


def test_mlp_sites_rejects_models_without_mlp():
    with pytest.raises(UsageError, match="no MLP down projection"):
        TV.mlp_sites(torch.nn.Sequential(torch.nn.Linear(2, 2)))


# -- activation shift ----------------------------------------------------------------------------------------------
def test_activation_shift_under_toxic_vector_scaling(data):
    from toxbench.interventions.base import State
    from toxbench.interventions.toxic_vectors import ToxicVectors

    model, tok = tiny_llama(), tiny_tokenizer()
    neurons = [(1, 4), (1, 9)]  # last layer: scaling them cannot change what reaches them
    st = State({"layers": torch.tensor([1, 1]), "neurons": torch.tensor([4, 9])}, {})
    kw = dict(limit=4, n_new_tokens=3, batch_size=2, progress=False)
    rows, per_neuron = activation_shift(model, tok, neurons, ["EN", "DE"], data,
                                        intervention=ToxicVectors(state=st, scale=0.0), **kw)
    assert [r["language"] for r in rows] == ["EN", "DE"] and all(r["n_prompts"] == 4 for r in rows)
    assert all(r["before"] != 0 and r["after"] == 0 for r in rows)
    assert len(per_neuron) == 4
    rows2, _ = activation_shift(model, tok, neurons, ["EN"], data, intervention=ToxicVectors(state=st, scale=2.0),
                                **kw)
    assert rows2[0]["after"] == pytest.approx(2 * rows2[0]["before"], rel=1e-5)
    # a different 'after' model (stands in for a DPO checkpoint)
    rows3, _ = activation_shift(model, tok, neurons, ["EN"], data, after_model=tiny_llama(seed=1), **kw)
    assert rows3[0]["after"] != pytest.approx(rows3[0]["before"])


def test_resolve_languages(data):
    assert resolve_languages(data, None) == ["DE", "EN", "JA"]  # the paper's 17 that exist, in its order
    assert resolve_languages(data, ["all"]) == ["DE", "EN", "JA"]
    assert resolve_languages(data, ["en", "ja"]) == ["EN", "JA"]
    with pytest.raises(UsageError, match="Did you mean 'DE'"):
        resolve_languages(data, ["de_"])


# -- retrieval -----------------------------------------------------------------------------------------------------
def test_retrieval_scores():
    a = torch.randn(10, 8)
    assert R.retrieval_scores(a, a)["accuracy"] == 1.0
    s = R.retrieval_scores(a, a[torch.roll(torch.arange(10), 1)])
    assert s["acc_en2x"] == 0.0 and s["acc_x2en"] == 0.0


def test_retrieval_by_layer_identical_translation_is_perfect(data):
    model, tok = tiny_gpt2(), tiny_tokenizer()
    rows = R.retrieval_by_layer(model, tok, data, ["zh", "de"], limit=None, progress=False)
    assert len(rows) == 2 * 3 and {r["n"] for r in rows} == {6}
    assert all(r["accuracy"] == 1.0 and r["paired_cosine"] == pytest.approx(1.0) for r in rows
               if r["language"] == "zh")  # the tiny "zh" file is a copy of English
    summary = R.summarise(rows)
    assert summary[0]["language"] == "zh" and summary[0]["mean_accuracy"] == 1.0


# -- CLI -----------------------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_ckpt(tmp_path):
    path = tmp_path / "tiny-llama"
    tiny_llama().save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def _run(args, **kw):
    from toxbench.harness.cli.analyze import analyze

    return CliRunner().invoke(analyze, args, catch_exceptions=False, **kw)


def test_cli_help():
    for sub in ([], ["probe"], ["toxic-vectors"], ["activations"], ["retrieval"]):
        res = _run([*sub, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output


@pytest.mark.parametrize("args,msg", [
    (["retrieval", "--langs", "klingon"], "'klingon'. Valid: de, zh"),
    (["activations", "-i", "aurra", "--langs", "en"], "Did you mean 'aura'"),
    (["activations", "-i", "aura", "--langs", "xx"], "unknown RTP-LX language"),
    (["probe", "--jigsaw-file", "missing.csv"], "not found"),
])
def test_cli_bad_input_exits_2_with_one_line(args, msg, data, tiny_ckpt, tmp_path):
    res = _run([*args, "--data-dir", str(data), "-m", str(tiny_ckpt), "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 2, res.output
    lines = [x for x in res.stderr.splitlines() if x.startswith("Error")]
    assert len(lines) == 1 and msg in lines[0]


def test_cli_end_to_end(data, tiny_ckpt, tmp_path):
    common = ["-m", str(tiny_ckpt), "--data-dir", str(data), "--cache-dir", str(tmp_path / "c"), "--no-progress",
              "--threads", "1", "--out", str(tmp_path / "out")]
    probe = ["--jigsaw-file", "pairs/test.csv", "--probe-limit", "40"]
    res = _run(["probe", *common, *probe])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[-1])["n_test"] == 4
    res = _run(["toxic-vectors", *common, *probe, "--top-k", "10", "--n-new-tokens", "2", "--limit", "3"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.splitlines()[-1])
    assert summary["candidates"] == 10 and "top_tokens" not in res.stdout  # tokens go to the file only
    assert "training the toxicity probe" not in res.stderr  # reused the probe `analyze probe` cached
    vec = tmp_path / "out" / "toxic_vectors.safetensors"
    res = _run(["activations", *common, "--vectors", str(vec), "-i", "toxic-vectors", "--intervention-state",
                str(vec), "-a", "scale=0", "--langs", "en,ja", "--limit", "2", "--n-new-tokens", "2"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[-1])["languages"] == 2
    res = _run(["retrieval", *common, "--langs", "de", "--limit", "4"])
    assert res.exit_code == 0, res.output
    for name in ("probe", "toxic_vectors", "activations", "retrieval"):
        assert (tmp_path / "out" / f"{name}.md").is_file() and (tmp_path / "out" / f"{name}.csv").is_file()
        assert (tmp_path / "out" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
