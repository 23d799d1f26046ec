"""DPO on a tiny in-process Llama: margins rise, the merged checkpoint matches the PEFT model, resume continues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from toxbench.harness.core.errors import UsageError

WORDS = "the a cat dog said good bad nice awful hello world is very and it was".split()


def tiny_lm(seed: int = 0):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[EOS]", *WORDS]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.decoder = decoders.WordPiece(prefix="##")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                      pad_token_id=0, eos_token_id=2, bos_token_id=2)
    return LlamaForCausalLM(cfg).eval(), tok


PROMPTS = ["the cat said", "a dog was", "hello world", "it is very", "the cat is", "a nice dog said",
           "the world is", "a cat and a dog"]


def write_pairs(path: Path, n: int = 16) -> Path:
    rows = [{"prompt": PROMPTS[i % len(PROMPTS)], "chosen": " good nice good", "rejected": " bad awful bad",
             "chosen_score": 0.0, "rejected_score": 1.0, "prompt_id": f"p{i}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# a few fast steps: high lr so 6 steps move a random tiny model; no warmup; checkpoints every 2 steps
FAST = dict(learning_rate=5e-3, warmup_steps=0, train_batch_size=4, max_steps=6, save_steps=2, logging_steps=1,
            lora_r=8, lora_alpha=16, lora_dropout=0.0, eval_pairs=4, max_length=32)


@pytest.fixture(scope="module")
def lm():
    torch.set_num_threads(1)
    return tiny_lm()


def _dpo(**cfg):
    from toxbench.interventions.dpo import DPO

    return DPO(**cfg)


def test_defaults_are_the_seeds():
    from toxbench.interventions.dpo import DPO

    d = DPO.defaults
    assert (d["beta"], d["learning_rate"], d["optimizer"], d["warmup_steps"], d["train_batch_size"]) == (
        0.1, 1e-5, "rmsprop", 150, 4)
    assert (d["lora"], d["lora_r"], d["lora_alpha"]) == (True, 64, 16)
    assert DPO.kind == "weight" and DPO.needs_fit and DPO.name == "dpo"


def test_fit_raises_margin_and_merges(lm, tmp_path):
    from transformers import AutoModelForCausalLM

    from toxbench.interventions.base import State
    from toxbench.interventions.dpo import checkpoint_hash
    from toxbench.interventions.dpo_training import reward_margins

    model, tok = lm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    state = _dpo(pairs=str(pairs), **FAST).fit(model, tok, cache_dir=tmp_path / "cache", seed=1, progress=False)
    meta = state.metadata
    # the caller's model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # DPO raised the implicit reward margin on held-out pairs (it is exactly 0 before training: policy == ref)
    assert meta["held_out"]["margin"] > 0.05 and meta["held_out"]["accuracy"] == 1.0
    assert meta["train_log"]["last"]["rewards/margins"] > meta["train_log"]["first"]["rewards/margins"]
    # a plain HF checkpoint, loadable without PEFT, equal to the trained PEFT model within tolerance
    ckpt = Path(meta["checkpoint_dir"])
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "config.json").is_file()
    assert (ckpt / "tokenizer.json").is_file() and not (ckpt / "adapter_config.json").exists()
    assert meta["merge_max_abs_diff"] < 1e-4
    merged = AutoModelForCausalLM.from_pretrained(str(ckpt)).eval()
    rows = [json.loads(line) for line in pairs.read_text().splitlines()][: meta["held_out"]["n"]]
    again = reward_margins(merged, model, tok, rows, 0.1)
    assert again["margin"] == pytest.approx(meta["held_out"]["margin"], abs=1e-4)
    # the state points at the checkpoint; model_override checks its hash
    assert meta["checkpoint_hash"] == checkpoint_hash(ckpt) and state.tensors == {}
    loaded = State.load(ckpt / "state.safetensors", meta["model_fingerprint"])
    assert _dpo(state=loaded).model_override() == str(ckpt)
    # the run protocol records the config the weights were trained with, not the defaults
    assert _dpo(state=loaded, lora_r=64).spec()["config"]["lora_r"] == 8
    # the same fit again is already complete: the finished checkpoint is reused, not retrained
    again_state = _dpo(pairs=str(pairs), **FAST).fit(model, tok, cache_dir=tmp_path / "cache", seed=1, progress=False)
    assert again_state.metadata == json.loads(json.dumps(meta))


def test_merged_logits_equal_peft_logits(lm, tmp_path):
    from transformers import AutoModelForCausalLM

    from toxbench.harness.run.pairs import read_pairs
    from toxbench.interventions.dpo import DPO
    from toxbench.interventions.dpo_training import build_trainer, merge_and_save

    model, tok = lm
    rows = read_pairs(write_pairs(tmp_path / "pairs.jsonl", 8))
    cfg = {**DPO.defaults, **FAST, "max_steps": 2}
    trainer = build_trainer(model, tok, rows, cfg, tmp_path / "t", seed=3, progress=False)
    trainer.train()
    peft_model = trainer.model.eval()
    assert hasattr(peft_model, "merge_and_unload")  # it really is a PEFT model
    ids = tok("the cat said good bad nice", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
        base = model(input_ids=ids).logits
    assert not torch.allclose(want, base, atol=1e-4)  # the adapter changed something
    merge_and_save(peft_model, tok, tmp_path / "merged", ids, "float32")
    got = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")).eval()(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_resume_continues_after_a_kill(lm, tmp_path):
    from transformers import TrainerCallback

    model, tok = lm
    pairs = write_pairs(tmp_path / "pairs.jsonl")

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt

    cfg = dict(pairs=str(pairs), **FAST)
    with pytest.raises(KeyboardInterrupt):
        _dpo(**cfg).fit(model, tok, cache_dir=tmp_path / "cache", seed=1, progress=False, callbacks=[Kill()])
    state = _dpo(**cfg).fit(model, tok, cache_dir=tmp_path / "cache", seed=1, progress=False)
    m = state.metadata
    assert m["resumed_from"] == "checkpoint-2" and m["start_step"] == 2
    assert m["steps_this_run"] == 4 and m["global_step"] == 6  # continued from step 2, did not restart


def test_weight_space_state_and_composition(tmp_path):
    from toxbench.interventions.base import Intervention, State
    from toxbench.interventions.compose import Composite

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"x")
    from toxbench.interventions.dpo import checkpoint_hash

    st = State({}, {"checkpoint_dir": str(ckpt), "checkpoint_hash": checkpoint_hash(ckpt)})

    class Pre(Intervention):
        name, kind = "pre", "input"

        def wrap_prompt(self, context, tokenizer=None):
            return "Be nice. " + context

    both = Composite([_dpo(state=st), Pre()])
    assert both.model_override() == str(ckpt) and both.wrap_prompt("x") == "Be nice. x"
    (ckpt / "model.safetensors").write_bytes(b"y")  # tampered
    with pytest.raises(UsageError, match="hash mismatch"):
        _dpo(state=st).model_override()


def test_fit_needs_pairs_and_known_args(lm, tmp_path):
    model, tok = lm
    with pytest.raises(UsageError, match="pairs=PATH"):
        _dpo().fit(model, tok, cache_dir=tmp_path)
    with pytest.raises(UsageError, match="lora_rank"):
        _dpo(pairs="x", lora_rank=8).fit(model, tok, cache_dir=tmp_path)
    with pytest.raises(UsageError, match="not found"):
        _dpo(pairs=str(tmp_path / "missing.jsonl")).fit(model, tok, cache_dir=tmp_path)


def test_full_finetuning_option(lm, tmp_path):
    from toxbench.interventions.dpo import checkpoint_hash

    model, tok = lm
    pairs = write_pairs(tmp_path / "pairs.jsonl", 12)
    cfg = {**FAST, "max_steps": 3, "lora": False, "learning_rate": 1e-3}
    meta = _dpo(pairs=str(pairs), **cfg).fit(model, tok, cache_dir=tmp_path / "c", seed=2, progress=False).metadata
    assert meta["global_step"] == 3 and meta["held_out"]["margin"] > 0
    assert meta["checkpoint_hash"] == checkpoint_hash(meta["checkpoint_dir"])


def test_dpo_strength_scales_the_merged_delta(tmp_path, tiny_llama_dir):
    """Issue 24: W = W0 + λ ΔW for a DPO checkpoint: λ=0.5 is the midpoint, λ=1 the merged weights as trained."""
    import torch
    from transformers import AutoModelForCausalLM

    from toxbench.harness.core.models import load_model
    from toxbench.harness.run.prepare import Setup, prepare
    from toxbench.interventions.base import State
    from toxbench.interventions.dpo import checkpoint_hash

    base = load_model(str(tiny_llama_dir), dtype=torch.float32, device="cpu")
    merged_dir = tmp_path / "merged"
    tuned = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.5)
    tuned.save_pretrained(merged_dir)
    base.tokenizer.save_pretrained(merged_dir)
    State({}, {"method": "dpo", "checkpoint_dir": str(merged_dir), "checkpoint_hash": checkpoint_hash(merged_dir),
               "model_fingerprint": base.fingerprint, "config": {"beta": 0.1}}).save(merged_dir / "state.safetensors")
    got = {}
    for lam in (1.0, 0.5):
        setup = Setup(model=str(tiny_llama_dir), dtype=torch.float32, device="cpu", intervention="dpo",
                      intervention_args=(("strength", lam),), intervention_state=str(merged_dir),
                      cache_dir=tmp_path / "cache")
        got[lam] = prepare(setup, log=lambda m: None)
    w0 = base.model.model.embed_tokens.weight
    assert torch.allclose(got[1.0].loaded.model.model.embed_tokens.weight, w0 + 0.5)
    assert torch.allclose(got[0.5].loaded.model.model.embed_tokens.weight, w0 + 0.25)
    assert got[0.5].loaded.fingerprint != got[1.0].loaded.fingerprint
    assert got[0.5].intervention.config["strength"] == 0.5 and "strength" not in got[1.0].intervention.config
