"""DPO training for the ``dpo`` intervention (``dpo.py``): TRL's DPOTrainer with LoRA through PEFT, resumed from
its own checkpoints, merged into a plain checkpoint whose logits are checked against the PEFT model, and the
held-out reward margin of the result."""

from __future__ import annotations

import copy
import importlib.metadata as md
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ..harness.core import models
from ..harness.core.defaults import DEFAULT_SEED
from ..harness.core.errors import UsageError
from ..harness.core.io import atomic_write_json, canonical_json, sha256_text
from ..harness.core.paths import cache_dir as default_cache
from ..harness.run.pairs import read_pairs
from .base import State
from .dpo import checkpoint_hash

log = logging.getLogger(__name__)

#: Config keys that change how long or where training runs, not what a given step computes: left out of the
#: trainer-dir key so that a longer run resumes a shorter one.
_LENGTH_KEYS = ("epochs", "max_steps", "resume", "output_dir", "save_steps", "save_total_limit", "logging_steps")
#: Probe used to check that the merged checkpoint computes the same logits as the PEFT model.
_MERGE_ATOL = 2e-3  # fp32 merge of a 135M model moves logits by ~1e-4


def lora_targets(model: torch.nn.Module, spec: str = "auto") -> list[str]:
    """Module names LoRA adapts: ``spec`` as given, or every Linear / GPT-2 Conv1D leaf but the output head."""
    if spec and spec != "auto":
        return [s.strip() for s in spec.split(",") if s.strip()]
    from transformers.pytorch_utils import Conv1D

    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {
        n.rsplit(".", 1)[-1]
        for n, m in model.named_modules()
        if isinstance(m, (torch.nn.Linear, Conv1D)) and m is not out_emb
    }
    names.discard("lm_head")
    if not names:
        raise UsageError("found no Linear layers for LoRA; pass lora_targets=NAME,NAME")
    return sorted(names)


def _truncate_prompt(tokenizer: Any, text: str, max_tokens: int) -> str:
    """Keep the end of long prompts (what the continuation depends on), as the seed's TRL version did."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if max_tokens and len(ids) > max_tokens:
        return tokenizer.decode(ids[-max_tokens:])
    return text


def _work_dirs(cfg: dict, cache_dir: Path, model_fp: str, pairs_hash: str) -> tuple[Path, Path]:
    run_cfg = {k: v for k, v in cfg.items() if k not in _LENGTH_KEYS and k != "pairs"}
    run_key = sha256_text(canonical_json({"cfg": run_cfg, "pairs": pairs_hash}))[:12]
    full_key = sha256_text(canonical_json({"cfg": {k: v for k, v in cfg.items() if k != "pairs"},
                                           "pairs": pairs_hash}))[:12]
    work = cache_dir / "dpo" / f"{model_fp[:16]}-{run_key}"
    merged = Path(cfg["output_dir"]).expanduser().resolve() if cfg.get("output_dir") else work / f"merged-{full_key}"
    return work / "trainer", merged


def _dtype_name(model: torch.nn.Module) -> str:
    return str(next(model.parameters()).dtype).replace("torch.", "")


@torch.no_grad()
def sequence_logps(model: torch.nn.Module, tokenizer: Any, prompts: list[str], completions: list[str]) -> torch.Tensor:
    """Sum of log p(completion | prompt) per row (completion tokens = those after the prompt's tokens)."""
    out = []
    device = next(model.parameters()).device
    for p, c in zip(prompts, completions):
        p_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
        full = tokenizer(p + c, add_special_tokens=False)["input_ids"]
        k = 0
        while k < min(len(p_ids), len(full)) and p_ids[k] == full[k]:
            k += 1
        ids = torch.tensor([full], device=device)
        logits = model(input_ids=ids).logits.float()
        lp = torch.log_softmax(logits[0, :-1], -1).gather(-1, ids[0, 1:, None])[:, 0]
        out.append(lp[max(k - 1, 0):].sum())
    return torch.stack(out).cpu() if out else torch.zeros(0)


def reward_margins(policy: torch.nn.Module, ref: torch.nn.Module, tokenizer: Any, rows: list[dict],
                   beta: float) -> dict:
    """DPO implicit rewards on pairs: mean margin beta*[(pi-ref)(chosen) - (pi-ref)(rejected)] and accuracy."""
    if not rows:
        return {"n": 0, "margin": None, "accuracy": None}
    prompts = [r["prompt"] for r in rows]
    eos = tokenizer.eos_token or ""
    ch = [r["chosen"] + eos for r in rows]  # TRL appends EOS to plain-text completions; score what it trained
    rj = [r["rejected"] + eos for r in rows]
    m = beta * ((sequence_logps(policy, tokenizer, prompts, ch) - sequence_logps(ref, tokenizer, prompts, ch))
                - (sequence_logps(policy, tokenizer, prompts, rj) - sequence_logps(ref, tokenizer, prompts, rj)))
    return {"n": len(rows), "margin": round(float(m.mean()), 6), "accuracy": round(float((m > 0).float().mean()), 4)}


class _StepCounter:
    """Counts optimizer steps taken in this process (to tell a resume from a restart)."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        outer = self

        class CB(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
                outer.start_step = state.global_step

            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
                outer.steps += 1

        self.steps = 0
        self.start_step = 0
        self.callback = CB()


def _trainer_args(cfg: dict, out_dir: Path, seed: int, on_cpu: bool, progress: bool) -> dict[str, Any]:
    """DPOConfig's arguments from the intervention's config (the seed's recipe by default)."""
    return dict(

        output_dir=str(out_dir),
        beta=cfg["beta"],
        learning_rate=cfg["learning_rate"],
        optim=cfg["optimizer"],
        lr_scheduler_type=cfg["lr_scheduler"],
        warmup_steps=cfg["warmup_steps"],
        weight_decay=cfg["weight_decay"],
        max_grad_norm=cfg["max_grad_norm"],
        per_device_train_batch_size=cfg["train_batch_size"],
        gradient_accumulation_steps=cfg["grad_accum"],
        num_train_epochs=cfg["epochs"],
        max_steps=cfg["max_steps"] if cfg["max_steps"] and cfg["max_steps"] > 0 else -1,
        max_length=cfg["max_length"],
        gradient_checkpointing=cfg["gradient_checkpointing"],
        save_strategy="steps",
        save_steps=cfg["save_steps"],
        save_total_limit=cfg["save_total_limit"],
        logging_steps=cfg["logging_steps"],
        report_to=[],
        seed=seed,
        data_seed=seed,
        bf16=False,  # TRL defaults to bf16 autocast; the seed trained in fp32 ("float16 causes NaN reward")
        fp16=False,
        use_cpu=on_cpu,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        save_only_model=False,
    )


def build_trainer(model: torch.nn.Module, tokenizer: Any, rows: list[dict], cfg: dict, out_dir: Path, *,
                  seed: int = DEFAULT_SEED, device: str | None = None, progress: bool = True,
                  callbacks: list | None = None):
    """A TRL DPOTrainer on a private copy of ``model`` (the caller's model is never modified)."""
    try:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer
    except ImportError as e:
        raise UsageError(f"DPO needs the 'dpo' extra (pip install 'toxbench[dpo]'): {e}") from None

    policy = copy.deepcopy(model)
    policy.config.use_cache = False
    tok = copy.deepcopy(tokenizer)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    on_cpu = (device or str(next(model.parameters()).device)).startswith("cpu")
    args = DPOConfig(**_trainer_args(cfg, out_dir, seed, on_cpu, progress))
    peft_config = None
    if cfg["lora"]:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"],
            target_modules=lora_targets(policy, cfg["lora_targets"]), bias="none", task_type="CAUSAL_LM",
        )
    ref = None
    if not cfg["lora"]:  # TRL would reload the reference from config.name_or_path; give it the in-memory copy
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    data = Dataset.from_list([
        {"prompt": _truncate_prompt(tok, r["prompt"], cfg["max_prompt_length"]), "chosen": r["chosen"],
         "rejected": r["rejected"]}
        for r in rows
    ])
    return DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=data, processing_class=tok,
                      peft_config=peft_config, callbacks=callbacks)


def _probe_ids(tokenizer: Any, rows: list[dict], device: torch.device) -> torch.Tensor:
    text = (rows[0]["prompt"] + rows[0]["chosen"]) if rows else "Hello world"
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :64]
    return ids.to(device)


def merge_and_save(trained: torch.nn.Module, tokenizer: Any, dst: Path, probe: torch.Tensor, dtype: str) -> dict:
    """Merge LoRA (if any) into the weights, save a plain HF checkpoint atomically, check logits after reload."""
    from transformers import AutoModelForCausalLM

    trained.eval()
    with torch.no_grad():
        before = trained(input_ids=probe).logits.float().cpu()
    plain = trained.merge_and_unload() if hasattr(trained, "merge_and_unload") else trained
    plain = plain.to(getattr(torch, dtype))
    plain.config.use_cache = True
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    reloaded = AutoModelForCausalLM.from_pretrained(str(dst), dtype=getattr(torch, dtype)).eval()
    with torch.no_grad():
        after = reloaded(input_ids=probe.cpu()).logits.float()
    diff = float((after - before).abs().max())
    tol = _MERGE_ATOL if dtype == "float32" else 5e-2
    if not diff <= tol:
        raise RuntimeError(f"merged DPO checkpoint differs from the trained model: max |dlogit| = {diff:.3g}")
    return {"merge_max_abs_diff": diff}


def fit_dpo(model: torch.nn.Module, tokenizer: Any, cfg: dict, *, data_dir: Path | None = None,
            cache_dir: Path | None = None, device: str | None = None, batch_size: int | None = None,
            model_fingerprint: str | None = None, model_name: str = "", seed: int = DEFAULT_SEED, progress: bool = True,
            callbacks: list | None = None, **_: Any) -> State:
    """Train, merge, save; returns the weight-space State (no tensors, metadata only)."""
    pairs_path, rows = _config_pairs(cfg)
    if cache_dir is None:
        cache_dir = default_cache()
    model_fp = model_fingerprint or models.model_fingerprint(model)
    pairs_hash = sha256_text("".join(canonical_json([r["prompt"], r["chosen"], r["rejected"]]) for r in rows))
    trainer_dir, merged_dir = _work_dirs(cfg, Path(cache_dir), model_fp, pairs_hash)
    n_eval = min(int(cfg.get("eval_pairs") or 0), len(rows) // 5)  # never more than a fifth of the pairs
    eval_rows, train_rows = rows[:n_eval], rows[n_eval:]  # pair files are in pool order, not sorted by score

    done = _finished_state(merged_dir, cfg, pairs_hash, model_fp)
    if done is not None:  # this exact fit already finished: reuse it rather than retrain or re-merge
        log.info("DPO checkpoint %s already fitted with this config", merged_dir)
        return done

    t0 = time.perf_counter()
    counter = _StepCounter()
    trainer = build_trainer(model, tokenizer, train_rows, cfg, trainer_dir, seed=seed, device=device,
                            progress=progress, callbacks=[counter.callback, *(callbacks or [])])
    last = _train(trainer, trainer_dir, cfg["resume"])
    train_s = time.perf_counter() - t0
    history = [h for h in trainer.state.log_history if "rewards/margins" in h]

    tok = trainer.processing_class
    dtype = _dtype_name(model)
    probe = _probe_ids(tok, rows, next(trainer.model.parameters()).device)
    merge_info = merge_and_save(trainer.model, tok, merged_dir, probe, dtype)
    held_out = _held_out_margins(merged_dir, model, tok, eval_rows, cfg["beta"], dtype)

    meta = {
        "method": "dpo", "checkpoint_dir": str(merged_dir), "checkpoint_hash": checkpoint_hash(merged_dir),
        "model_fingerprint": model_fp, "model": model_name, "base_model_fingerprint": model_fp,
        "pairs_file": str(pairs_path), "pairs_hash": pairs_hash, "n_pairs": len(train_rows),
        "config": {k: v for k, v in cfg.items()}, "trainer_dir": str(trainer_dir),
        "resumed_from": Path(last).name if last else None, "start_step": counter.start_step,
        "steps_this_run": counter.steps, "global_step": trainer.state.global_step, "train_wall_s": round(train_s, 2),
        "train_log": {"first": _log_entry(history[0]) if history else None,
                      "last": _log_entry(history[-1]) if history else None},
        "held_out": held_out, "dtype": dtype, "versions": _versions(), **merge_info,
    }
    state = State(tensors={}, metadata=meta)
    state.save(merged_dir / "state.safetensors")  # so `--intervention-state DIR` finds it next to the weights
    atomic_write_json(merged_dir / "toxbench_dpo.json", meta)
    del trainer
    return state


def _train(trainer: Any, trainer_dir: Path, resume: bool) -> str | None:
    """Train, from the last Trainer checkpoint when ``resume`` finds one; returns that checkpoint (or None)."""
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(trainer_dir)) if resume and trainer_dir.is_dir() else None
    if last:
        log.info("resuming DPO from %s", last)
    with torch.enable_grad():  # a caller may have switched grad off globally (inference code in the same process)
        trainer.train(resume_from_checkpoint=last)
    return last


def _config_pairs(cfg: dict) -> tuple[Path, list[dict]]:
    """The pairs file of ``cfg`` (``pairs``, cut to ``max_pairs``) and its rows; none is a UsageError."""
    if not cfg.get("pairs"):
        raise UsageError("dpo needs pairs=PATH (build them with `toxbench pairs`, or import the seeds' pairwise data)")
    pairs_path = Path(cfg["pairs"]).expanduser().resolve()
    rows = read_pairs(pairs_path)
    if cfg.get("max_pairs"):
        rows = rows[: int(cfg["max_pairs"])]
    if not rows:
        raise UsageError(f"no pairs in {pairs_path}")
    return pairs_path, rows


def _held_out_margins(merged_dir: Path, base: torch.nn.Module, tok: Any, eval_rows: list[dict], beta: float,
                      dtype: str) -> dict[str, Any]:
    """Reward margins of the merged checkpoint against ``base`` on the held-out pairs (n=0 when there are none)."""
    if not eval_rows:
        return {"n": 0, "margin": None, "accuracy": None}
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=getattr(torch, dtype)).eval()
    base = base.eval()
    return reward_margins(merged.to(next(base.parameters()).device), base, tok, eval_rows, beta)


def _log_entry(h: dict) -> dict:
    """The trainer log fields a fitted state records for its first and last logged step."""
    return {k: h[k] for k in ("step", "loss", "rewards/margins", "rewards/accuracies") if k in h}


def _finished_state(merged_dir: Path, cfg: dict, pairs_hash: str, model_fp: str) -> State | None:
    path = merged_dir / "state.safetensors"
    if not path.is_file():
        return None
    try:
        st = State.load(path)
    except Exception:  # a torn or foreign file: refit
        return None
    m = st.metadata
    same = (m.get("config") == json_roundtrip(cfg) and m.get("pairs_hash") == pairs_hash
            and m.get("model_fingerprint") == model_fp)
    if not same or m.get("checkpoint_hash") != checkpoint_hash(merged_dir):
        return None
    return st


def json_roundtrip(obj: Any) -> Any:
    """``obj`` as it reads back from the state's JSON metadata (tuples become lists...)."""
    return json.loads(canonical_json(obj))


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("trl", "peft", "transformers", "torch"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
