"""Composition: an ordered list of interventions attached together (``aura+preprompt``).

Nothing is special-cased: hooks nest, prompt rewrites chain left to right, and at most one part may replace
the weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ..harness.core.errors import UsageError
from .base import Intervention


class Composite(Intervention):
    kind = "composite"

    def __init__(self, parts: list[Intervention]) -> None:
        super().__init__()
        self._parts = list(parts)
        overrides = [p.name for p in self._parts if p.model_override() is not None]
        if len(overrides) > 1:
            raise UsageError(f"cannot compose two weight-space interventions: {' + '.join(overrides)}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return "+".join(p.name for p in self._parts)

    @property
    def parts(self) -> list[Intervention]:
        return self._parts

    @contextlib.contextmanager
    def attach(self, model: torch.nn.Module) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for p in self._parts:
                stack.enter_context(p.attach(model))
            yield

    def wrap_prompt(self, context: str, tokenizer: Any = None) -> str:
        for p in self._parts:
            context = p.wrap_prompt(context, tokenizer)
        return context

    def model_override(self) -> str | None:
        for p in self._parts:
            if (o := p.model_override()) is not None:
                return o
        return None

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "composite", "parts": [p.spec() for p in self._parts]}
