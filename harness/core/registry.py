"""One registry idiom for interventions and scorers: lazy, did-you-mean, entry points.

Built-ins are registered as ``"module:attr"`` strings so nothing heavy is imported until a name is used.
Third-party packages add entries through the entry-point group given to the registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from .errors import UsageError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """``builtins``: ``{name: "module:attr"}``, the module relative to ``package`` (the registering package)."""

    def __init__(self, what: str, entry_point_group: str | None = None, builtins: Mapping[str, str] | None = None,
                 package: str = "") -> None:
        self.what = what
        self.group = entry_point_group
        self._targets: dict[str, str | T] = {}
        self._loaded_eps = False
        for name, target in (builtins or {}).items():
            self.register(name, f"{package}.{target}" if package else target)

    def register(self, name: str, target: str | T | None = None) -> Callable[[T], T] | None:
        """``register("x", "pkg.mod:Cls")`` lazily, or use ``@registry.register("x")`` as a decorator."""
        if target is not None:
            self._targets[name] = target
            return None

        def deco(obj: T) -> T:
            self._targets[name] = obj
            return obj

        return deco

    def _load_entry_points(self) -> None:
        if self._loaded_eps or self.group is None:
            return
        self._loaded_eps = True
        for ep in entry_points(group=self.group):
            self._targets.setdefault(ep.name, ep.value)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._targets)

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._targets

    def get(self, name: str) -> T:
        self._load_entry_points()
        if name not in self._targets:
            raise did_you_mean(name, self._targets, self.what)
        target = self._targets[name]
        if isinstance(target, str):
            mod, _, attr = target.partition(":")
            try:
                obj = getattr(importlib.import_module(mod), attr)
            except ImportError as e:  # an optional extra is missing
                raise UsageError(f"{self.what} {name!r} needs a package that is not installed: {e}") from None
            self._targets[name] = obj
            target = obj
        return target  # type: ignore[return-value]
