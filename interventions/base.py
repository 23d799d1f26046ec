"""The Intervention protocol: one small interface for activation-, weight- and input-space methods.

An intervention is built from its config (and, when it learns something, a fitted ``State``); it then
- ``attach(model)``: a context manager during which the model's forward pass is changed (activation space);
- ``wrap_prompt(context, tokenizer)``: rewrites a generation context (input space);
- ``model_override()``: a checkpoint dir that replaces the model's weights (weight space).
Every hook point defaults to "no change", so a method implements only what it changes and composition is
generic (see ``compose.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..harness.core.errors import UsageError
from ..harness.core.io import atomic_write_bytes, canonical_json, sha256_file, sha256_text

KINDS = ("none", "activation", "weight", "input")


@dataclass
class State:
    """What fitting learned: tensors (one per module for AurA) + JSON-able metadata, stored as safetensors."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> str:
        """Write atomically; returns the file's sha256 (the state hash recorded in run specs)."""
        from safetensors.torch import save_file

        path = Path(path)
        # Every value JSON-encoded (strings too), so "1234" or "null" come back as the strings they were.
        meta = {k: json.dumps(v, sort_keys=True) for k, v in sorted(self.metadata.items())}
        tmp = path.with_name(path.name + ".partial")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.tensors.items()}, str(tmp), metadata=meta)
        atomic_write_bytes(path, tmp.read_bytes())
        tmp.unlink()
        return sha256_file(path)

    @classmethod
    def load(cls, path: str | Path, model_fingerprint: str | None = None) -> State:
        """Load a state; refuse it when it was fitted on another model than ``model_fingerprint``."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise UsageError(f"intervention state {str(path)!r} not found")
        tensors: dict[str, torch.Tensor] = {}
        try:
            with safe_open(str(path), framework="pt") as f:
                raw = f.metadata() or {}
                for k in f.keys():
                    tensors[k] = f.get_tensor(k)
        except Exception as e:  # noqa: BLE001 - SafetensorError, a torn file...: unusable either way
            reason = (str(e).splitlines() or [type(e).__name__])[0][:120]
            raise UsageError(f"intervention state {str(path)!r} is not a safetensors file ({reason}); pass a state "
                             "written by `toxbench fit`") from None
        meta: dict[str, Any] = {}
        for k, v in raw.items():
            try:
                meta[k] = json.loads(v)
            except json.JSONDecodeError:
                meta[k] = v
        fitted_on = meta.get("model_fingerprint")
        if model_fingerprint and fitted_on and fitted_on != model_fingerprint:
            raise UsageError(
                f"intervention state {str(path)!r} was fitted on model {fitted_on[:12]} "
                f"({meta.get('model', '?')}), not on the model being run ({model_fingerprint[:12]}); refit it"
            )
        return cls(tensors, meta)

    def hash(self) -> str:
        """Content hash over metadata and tensors, independent of the file it came from."""
        h = hashlib.sha256(canonical_json(self.metadata).encode())
        for k in sorted(self.tensors):
            t = self.tensors[k].detach().cpu().contiguous()
            h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()


class Intervention:
    """Base class; subclasses set ``name``/``kind`` and override the hook points they change."""

    name: ClassVar[str] = "none"
    kind: ClassVar[str] = "none"
    #: True when ``fit`` must run (or a saved state be given) before the intervention can be used.
    needs_fit: ClassVar[bool] = False
    #: Settings applied to a fitted state, never part of the fit (e.g. AurA's ``strength``): one state serves
    #: every value, so a sweep over them fits once.
    apply_keys: ClassVar[tuple[str, ...]] = ()
    #: The method's strength knob, swept by ``toxbench sweep --strength`` (None: the method has none).
    strength_key: ClassVar[str | None] = None

    def __init__(self, state: State | None = None, **config: Any) -> None:
        self.state = state
        self.config = config

    @classmethod
    def needs_state(cls, config: dict[str, Any]) -> bool:
        """Whether ``build`` must find, load or fit a state for this config (a steering file brings its own)."""
        return cls.needs_fit

    # -- learning ---------------------------------------------------------------------------------------------
    def fit(self, model: torch.nn.Module, tokenizer: Any, **context: Any) -> State:
        """Learn a state from data (``context`` carries data_dir, cache_dir, device, batch_size, progress...)."""
        raise UsageError(f"intervention {self.name!r} has nothing to fit")

    # -- hook points ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def attach(self, model: torch.nn.Module) -> Iterator[None]:
        """Activation space: change the forward pass inside the ``with`` block only."""
        yield

    def wrap_prompt(self, context: str, tokenizer: Any = None) -> str:
        """Input space: the text actually fed to the model for a generation context."""
        return context

    def model_override(self) -> str | None:
        """Weight space: a checkpoint directory to load instead of the base model's weights."""
        return None

    @property
    def parts(self) -> list[Intervention]:
        return [self]

    # -- identity ---------------------------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """What a RunSpec records: name, config and the state's hash."""
        return {
            "name": self.name,
            "kind": self.kind,
            "config": dict(sorted(self.config.items())),
            "state_hash": self.state.hash() if self.state is not None else None,
        }

    def fingerprint(self) -> str:
        return sha256_text(canonical_json(self.spec()))[:16]
