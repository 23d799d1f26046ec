"""Shared-prefill batched sampling: greedy equivalence with generate(), sampling rule, determinism, kill/resume."""

from __future__ import annotations

import json

import pytest
import torch

from toxbench.harness.run import generation
from toxbench.harness.run.generation import generate_samples, sample_next, truncate_at_stops

WORDS = "the a cat dog sat on mat and ran to big red blue house tree sun moon is was very happy sad".split()
CONTEXTS = [
    "the cat sat",
    "a dog ran to the big red house",
    "sun",
    "the moon is very",
    "blue tree",
    "the cat sat",  # duplicate prompt: gets its own, independent samples
    "",
]


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3}
    for w in WORDS:
        vocab[w] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]"
    )


def tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, bos_token_id=2, eos_token_id=3, pad_token_id=0,
    )
    # float64 so that padding / batch shape cannot flip an argmax through rounding
    return LlamaForCausalLM(cfg).to(torch.float64).eval()


@pytest.fixture(scope="module")
def tok_model():
    torch.set_num_threads(1)
    tok = tiny_tokenizer()
    return tok, tiny_llama(len(tok))


def test_greedy_equals_plain_generate(tok_model):
    tok, model = tok_model
    ours = generate_samples(model, tok, CONTEXTS[:5], k=3, max_new_tokens=8, do_sample=False, progress=False,
                            add_special_tokens=False, batch_size=2)
    for ctx, outs in zip(CONTEXTS[:5], ours):
        assert len(outs) == 3 and len(set(outs)) == 1
        ids = tok(ctx, return_tensors="pt", add_special_tokens=False)
        ref = model.generate(**ids, do_sample=False, max_new_tokens=8, pad_token_id=0)
        assert outs[0] == tok.decode(ref[0, ids.input_ids.shape[1]:], skip_special_tokens=True)


def test_shapes_and_determinism(tok_model):
    tok, model = tok_model
    a = generate_samples(model, tok, CONTEXTS, k=5, max_new_tokens=6, seed=1, progress=False)
    b = generate_samples(model, tok, CONTEXTS, k=5, max_new_tokens=6, seed=1, progress=False)
    c = generate_samples(model, tok, CONTEXTS, k=5, max_new_tokens=6, seed=2, progress=False)
    assert a == b
    assert a != c
    assert [len(x) for x in a] == [5] * len(CONTEXTS)
    assert len(set(a[0])) > 1  # samples of one prompt differ
    assert a[0] != a[5]  # a duplicate prompt is sampled independently
    assert all(len(s.split()) <= 6 for outs in a for s in outs)


def test_outputs_do_not_depend_on_batch_composition(tok_model):
    tok, model = tok_model
    a = generate_samples(model, tok, CONTEXTS, k=4, max_new_tokens=6, batch_size=1, progress=False)
    b = generate_samples(model, tok, CONTEXTS, k=4, max_new_tokens=6, batch_size=1000, progress=False)
    c = generate_samples(model, tok, CONTEXTS[::-1], k=4, max_new_tokens=6, batch_size=3, progress=False)
    assert a == b
    r = c[::-1]  # back in a's order; reversing swapped which copy of the duplicate prompt comes first
    assert a[1:5] == r[1:5] and a[6] == r[6]
    assert a[0] == r[5] and a[5] == r[0]


def test_kill_and_resume_gives_identical_outputs(tok_model, tmp_path, monkeypatch):
    tok, model = tok_model
    ref = generate_samples(model, tok, CONTEXTS, k=4, max_new_tokens=6, batch_size=2, progress=False)

    cache = tmp_path / "gen.jsonl"
    real_run = generation._BatchRunner.run
    calls = {"n": 0}

    def dying_run(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed in the middle of the third batch
        return real_run(self, *a, **kw)

    monkeypatch.setattr(generation._BatchRunner, "run", dying_run)
    with pytest.raises(KeyboardInterrupt):
        generate_samples(model, tok, CONTEXTS, k=4, max_new_tokens=6, batch_size=2, cache_path=cache, progress=False)
    written = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(written) == 4  # two finished batches of two prompts each

    calls["n"] = -100  # no more deaths; count the batches the restart really generates
    out = generate_samples(model, tok, CONTEXTS, k=4, max_new_tokens=6, batch_size=2, cache_path=cache, progress=False)
    assert out == ref
    assert calls["n"] == -100 + 2  # 7 prompts in 4 batches, 2 already done

    # A torn last line (killed mid-write) is ignored; other settings do not reuse the cache.
    with open(cache, "a") as f:
        f.write('{"settings": "x", "key": ')
    assert generate_samples(model, tok, CONTEXTS, k=4, max_new_tokens=6, batch_size=2, cache_path=cache,
                            progress=False) == ref
    other = generate_samples(model, tok, CONTEXTS, k=4, max_new_tokens=6, batch_size=2, cache_path=cache,
                             seed=99, progress=False)
    assert other != ref


def test_until_truncates_decoded_text(tok_model):
    tok, model = tok_model
    plain = generate_samples(model, tok, CONTEXTS[:3], k=3, max_new_tokens=8, progress=False)
    cut = generate_samples(model, tok, CONTEXTS[:3], k=3, max_new_tokens=8, until=["the"], progress=False)
    for ps, cs in zip(plain, cut):
        for p, c in zip(ps, cs):
            assert c == truncate_at_stops(p, ["the"])
            assert "the" not in c
    assert truncate_at_stops("ab. cd\n\nef", ["\n\n", "."]) == "ab"


def _hf_filtered_probs(logits, temperature, top_k, top_p):
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    x = TemperatureLogitsWarper(temperature)(None, logits.clone()) if temperature != 1.0 else logits.clone()
    if top_k:
        x = TopKLogitsWarper(top_k)(None, x)
    if top_p < 1.0:
        x = TopPLogitsWarper(top_p)(None, x)
    return torch.softmax(x, -1)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 0.9), (0.7, 0, 0.8), (1.0, 50, 0.9), (1.0, 0, 1.0),
                                                     (1.3, 20, 1.0)])
def test_sampling_rule_matches_transformers_warpers(temperature, top_k, top_p, monkeypatch):
    # Small probe so that the full-sort fallback of top-p runs too.
    monkeypatch.setattr(generation, "NUCLEUS_PROBES", (4, 16))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 300, generator=g, dtype=torch.float64) * torch.tensor([0.5, 1, 2, 4, 8, 0.1]).unsqueeze(1)
    probs = _hf_filtered_probs(logits.float(), temperature, top_k, top_p)
    sp, si = probs.sort(-1, descending=True)
    if top_p >= 1.0 and not top_k:  # plain sampling draws in vocabulary order (no sort needed)
        sp, si = probs, torch.arange(probs.shape[1]).expand_as(probs)
    cdf = sp.cumsum(-1)
    agree = total = 0
    for u0 in torch.linspace(0.001, 0.999, 97):
        u = torch.full((6,), float(u0), dtype=torch.float64)
        got = sample_next(logits, u, temperature, top_p, top_k)
        assert bool((probs.gather(1, got.unsqueeze(1)) > 0).all())  # only tokens HF keeps
        # the same inverse-CDF draw over HF's renormalised, sorted distribution
        pos = torch.searchsorted(cdf, (u.float() * cdf[:, -1]).unsqueeze(1), right=True).clamp(max=cdf.shape[1] - 1)
        want = si.gather(1, pos).squeeze(1)
        agree += int((got == want).sum())
        total += 6
    assert agree >= total - 2  # exact up to float rounding at a CDF boundary
    # and the empirical distribution follows HF's probabilities
    u = torch.rand(20000, generator=g, dtype=torch.float64)
    row = logits[2:3].expand(20000, -1)
    got = sample_next(row, u, temperature, top_p, top_k)
    freq = torch.bincount(got, minlength=300).double() / 20000
    assert float((freq - probs[2].double()).abs().max()) < 0.02


def test_degenerate_settings(tok_model):
    tok, model = tok_model
    greedy = generate_samples(model, tok, CONTEXTS[:2], k=2, max_new_tokens=4, do_sample=False, progress=False)
    assert generate_samples(model, tok, CONTEXTS[:2], k=2, max_new_tokens=4, temperature=0.0, progress=False) == greedy
    logits = torch.randn(3, 50, dtype=torch.float64)
    top1 = sample_next(logits, torch.full((3,), 0.99, dtype=torch.float64), 1.0, 1e-9, 0)
    assert torch.equal(top1, logits.argmax(-1))  # a tiny nucleus keeps the top token only


def test_rows_stop_at_eos(tok_model):
    import copy

    tok, model = tok_model
    plain = generate_samples(model, tok, CONTEXTS[:1], k=1, max_new_tokens=6, do_sample=False, progress=False)[0][0]
    words = plain.split()
    stop_word = words[1]  # make the second generated word an end-of-sequence token
    m2 = copy.deepcopy(model)
    m2.generation_config.eos_token_id = [3, tok.convert_tokens_to_ids(stop_word)]
    out = generate_samples(m2, tok, CONTEXTS[:1], k=2, max_new_tokens=6, do_sample=False, progress=False)[0]
    assert out == [words[0], words[0]]


@pytest.mark.slow
def test_smollm2_greedy_batched_matches_generate():
    from toxbench.harness.core.models import load_model

    torch.set_num_threads(1)  # 2 busy shared cores: one thread is several times faster
    lm = load_model("smollm2-135m")
    model, tok = lm.model, lm.tokenizer
    prompts = ["The weather today is", "In 1850 the city council decided to build a new", "My favourite"]
    ours = generate_samples(model, tok, prompts, k=2, max_new_tokens=6, do_sample=False, progress=False)
    same = 0
    for p, outs in zip(prompts, ours):
        ids = tok(p, return_tensors="pt")
        ref = model.generate(**ids, do_sample=False, max_new_tokens=6, pad_token_id=tok.eos_token_id)
        same += outs[0] == tok.decode(ref[0, ids.input_ids.shape[1]:], skip_special_tokens=True)
    assert same == len(prompts)


def _tiny_gemma3(vocab_size: int):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, sliding_window=4, max_position_embeddings=128, bos_token_id=2,
        eos_token_id=3, pad_token_id=0,
    )
    return Gemma3ForCausalLM(cfg).to(torch.float64).eval()


def _tiny_gpt2(vocab_size: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=128, bos_token_id=2,
                     eos_token_id=3)
    return GPT2LMHeadModel(cfg).to(torch.float64).eval()


@pytest.mark.parametrize("build", [_tiny_gemma3, _tiny_gpt2], ids=["gemma3-sliding-window", "gpt2-absolute-pos"])
def test_greedy_equals_generate_other_architectures(build):
    tok = tiny_tokenizer()
    model = build(len(tok))
    ctx = ["the cat sat on the big red mat and", "sun", "a dog ran to the big red house and the"]
    ours = generate_samples(model, tok, ctx, k=2, max_new_tokens=8, do_sample=False, progress=False)
    for c, o in zip(ctx, ours):
        ids = tok(c, return_tensors="pt")
        ref = model.generate(**ids, do_sample=False, max_new_tokens=8, pad_token_id=0)
        assert o[0] == tok.decode(ref[0, ids.input_ids.shape[1]:], skip_special_tokens=True)
