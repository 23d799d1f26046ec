"""DPO as a weight-space intervention: TRL's DPOTrainer (+ LoRA through PEFT) on preference pairs, merged into a
plain Hugging Face checkpoint that the runner loads instead of the base weights.

Defaults follow the second seed (Li, Yong, Bach 2024, ``xg/training/dpo.py``): beta 0.1, RMSprop, lr 1e-5 constant
with 150 warmup steps, weight decay 0.05, grad-norm clip 10, batch 4, LoRA r 64 / alpha 16 / dropout 0.05 on the
attention and MLP projections, 5 epochs, prompts cut to 64 tokens and sequences to 256. (The seed also put LoRA on
``embed_tokens``/``lm_head``; TRL >= 1.0 refuses an adapter on the LM head, so ours stops at the projections.)

Layout under ``<cache>/dpo/<model fp>-<run key>/``: ``trainer/checkpoint-N`` (Trainer checkpoints, resumed
automatically: the run key ignores the training length, so a longer ``max_steps`` continues a shorter run) and
``merged-<config key>/`` (safetensors + config + tokenizer + ``state.safetensors``), so both
``--intervention dpo --intervention-state DIR`` and ``--model DIR`` work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from ..harness.core.errors import UsageError, did_you_mean
from ..harness.core.io import sha256_file, sha256_text
from .base import Intervention, State


class DPO(Intervention):
    """Weight space: the merged checkpoint of a LoRA DPO fit replaces the base weights (``model_override``)."""

    name: ClassVar[str] = "dpo"
    kind: ClassVar[str] = "weight"
    needs_fit: ClassVar[bool] = True
    # λ scales the merged LoRA delta, W = W0 + λ ΔW (harness/run/prepare.py): a DPO curve needs no retraining
    apply_keys: ClassVar[tuple[str, ...]] = ("strength",)
    strength_key: ClassVar[str | None] = "strength"
    defaults: ClassVar[dict[str, Any]] = {
        "pairs": None,  # JSONL from `toxbench pairs` (or the seeds' pairwise format, file or folder)
        "max_pairs": None,
        "beta": 0.1,
        "learning_rate": 1e-5,
        "optimizer": "rmsprop",
        "lr_scheduler": "constant_with_warmup",
        "warmup_steps": 150,
        "weight_decay": 0.05,
        "max_grad_norm": 10.0,
        "train_batch_size": 4,
        "grad_accum": 1,
        "epochs": 5.0,
        "max_steps": -1,  # > 0 overrides epochs
        "lora": True,  # False = full fine-tuning (keeps a frozen copy of the model as the reference)
        "lora_r": 64,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "lora_targets": "auto",  # comma-separated module names, or "auto" = every Linear/Conv1D but the LM head
        "max_length": 256,
        "max_prompt_length": 64,
        "gradient_checkpointing": False,
        "save_steps": 25,
        "save_total_limit": 2,
        "logging_steps": 10,
        "eval_pairs": 32,  # held-out pairs for the reward margin after training (0 = none)
        "resume": True,
        "output_dir": None,  # where the merged checkpoint goes (default: under the cache)
        "strength": 1.0,  # the merged delta's scale when applied (0 = the base model); not part of the fit
    }

    def __init__(self, state: State | None = None, **config: Any) -> None:
        # A fitted state defines the weights: record the config it was trained with, not the defaults that
        # `--intervention-state DIR` without arguments would otherwise put in the run's protocol.
        strength = float(config.get("strength", 1.0))
        if state is not None and isinstance(state.metadata.get("config"), dict):
            config = {k: v for k, v in state.metadata["config"].items() if k != "strength"}
        config = {k: v for k, v in config.items() if k != "strength"}
        if not 0.0 <= strength <= 1.0:
            raise UsageError(f"dpo strength {strength!r} is invalid: must be in [0, 1] (0 = the base model)")
        if strength != 1.0:  # the trained model keeps the identity it had before the knob
            config["strength"] = strength
        super().__init__(state=state, **config)

    # -- weight space -----------------------------------------------------------------------------------------
    def model_override(self) -> str | None:
        if self.state is None:
            return None
        meta = self.state.metadata
        ckpt = Path(meta["checkpoint_dir"])
        if not (ckpt / "config.json").is_file():
            raise UsageError(f"DPO checkpoint {str(ckpt)!r} is missing; refit with `toxbench fit --intervention dpo`")
        if not getattr(self, "_verified", False):
            if checkpoint_hash(ckpt) != meta.get("checkpoint_hash"):
                raise UsageError(f"DPO checkpoint {str(ckpt)!r} changed since it was fitted (hash mismatch); refit it")
            self._verified = True
        return str(ckpt)

    # -- fitting ----------------------------------------------------------------------------------------------
    def fit(self, model: torch.nn.Module, tokenizer: Any, **context: Any) -> State:
        cfg = {k: v for k, v in {**self.defaults, **self.config}.items() if k != "strength"}
        unknown = sorted(set(self.config) - set(self.defaults))
        if unknown:
            raise did_you_mean(unknown[0], self.defaults, "dpo argument")
        from .dpo_training import fit_dpo  # TRL and PEFT load only when a DPO model is trained

        return fit_dpo(model, tokenizer, cfg, **context)


# -- helpers ----------------------------------------------------------------------------------------------------
def checkpoint_hash(ckpt: str | Path) -> str:
    """Hash of a checkpoint's weights and config (tokenizer and our own state file excluded)."""
    ckpt = Path(ckpt)
    files = sorted(p for p in ckpt.glob("*.safetensors") if p.name != "state.safetensors")
    files.append(ckpt / "config.json")
    return sha256_text("".join(f"{p.name}:{sha256_file(p)};" for p in files))
