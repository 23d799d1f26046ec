"""Forward hooks as a context manager: validate every name first, attach, remove exactly our own handles."""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from ..harness.core.errors import UsageError, did_you_mean

Hook = Callable[[torch.nn.Module, Any, Any], Any]


def resolve_modules(model: torch.nn.Module, patterns: list[str] | str) -> list[str]:
    """Module names matching any glob in ``patterns`` (in model order); a pattern matching nothing is an error."""
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p]
    names = [n for n, _ in model.named_modules() if n]
    out: list[str] = []
    for pat in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            # Suggest names with the same shape: digits generalised, so "h.*.mlp.fc" finds "h.0.mlp.c_fc".
            shapes = sorted({_generalise(n) for n in names})
            raise UsageError(str(did_you_mean(pat, shapes, "module pattern (matches no module)")))
        out.extend(h for h in hits if h not in out)
    order = {n: i for i, n in enumerate(names)}
    return sorted(out, key=order.__getitem__)


def _generalise(name: str) -> str:
    return ".".join("*" if part.isdigit() else part for part in name.split("."))


@contextlib.contextmanager
def hooked(model: torch.nn.Module, hooks: Mapping[str, Hook], pre: bool = False) -> Iterator[None]:
    """Register ``{module_name: forward_hook}`` for the duration of the block.

    All names are checked before anything is attached, and ``finally`` removes exactly the handles registered
    here, so hooks owned by others (accelerate, PEFT, a user's) survive, also after an exception.
    ``pre=True`` registers forward *pre*-hooks (``fn(module, inputs)``), e.g. to scale a projection's input.
    """
    modules = dict(model.named_modules())
    missing = [n for n in hooks if n not in modules]
    if missing:
        raise did_you_mean(missing[0], [n for n in modules if n], "module")
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        for name, fn in hooks.items():
            register = modules[name].register_forward_pre_hook if pre else modules[name].register_forward_hook
            handles.append(register(fn))
        yield
    finally:
        for h in handles:
            h.remove()


def scale_output_hook(alpha: torch.Tensor) -> Hook:
    """A hook multiplying a module's output by ``alpha`` along its last (unit) dimension.

    ``alpha`` is cast to the output's dtype and device once, on first use, then reused.
    """
    cache: dict[tuple, torch.Tensor] = {}

    def hook(module: torch.nn.Module, inputs: Any, output: Any) -> Any:
        out = output[0] if isinstance(output, tuple) else output
        key = (out.dtype, out.device)
        a = cache.get(key)
        if a is None:
            a = cache[key] = alpha.to(dtype=out.dtype, device=out.device)
        scaled = out * a
        return (scaled, *output[1:]) if isinstance(output, tuple) else scaled

    return hook
