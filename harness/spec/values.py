"""Lists and KEY=VALUE settings from the command line, parsed one way everywhere (``split_commas`` for
``--tasks a,b``-style lists). KEY=VALUE: ``-a/--intervention-arg``, ``--scorer-arg``,
``--backend-arg``, ``scorers eval --scorer-arg`` and ``suite --set``.

A value is read as a YAML scalar (``50`` int, ``0.5`` / ``1e-4`` float, ``true`` / ``false`` bool, ``null`` or
nothing None, anything else a string) or a YAML flow list / mapping (``[1, 2]``, ``{a: 1}``). Two departures from
PyYAML's YAML 1.1 make values read as a user means them: only true/false are booleans (a language code ``no`` stays a
string), and ``1e-4`` is a float. Text that is not a whole YAML value (``Be nice: no swearing``, ``a # b``) stays the
string as typed, so free text needs no quoting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

from ..core.errors import UsageError

_BOOL = "tag:yaml.org,2002:bool"
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (true/false only) and integers, and exponent floats without a dot (1e-4)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
# decimal and hex only: YAML 1.1 would read 010 as octal 8 and 1:30 as 90
_Loader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"), list("-+0123456789"))
_EXP_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+0123456789."))
_RESOLVER = _Loader("")


def parse_value(raw: str) -> Any:
    """One command-line value -> int, float, bool, None, list, dict or the string as typed (see the module doc)."""
    text = raw.strip()
    if text[:1] in ("[", "{", '"', "'"):  # a flow collection or a quoted string
        try:
            return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError:
            return raw
    if text.lower() == "none":  # Python's spelling of null, accepted as before
        return None
    if _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)) == _STR:
        return raw
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a plain int / float / bool / null scalar


def parse_kv(items: Iterable[str], option: str = "setting", example: str = "k=50") -> tuple[tuple[str, Any], ...]:
    """``["k=50", "aura.pooling=mean"]`` -> ``(("aura.pooling", "mean"), ("k", 50))``: sorted by key, the last
    value of a repeated key wins. A malformed item is a UsageError naming it and ``option``."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(f"{option} {item!r} is not KEY=VALUE (e.g. {example})")
        out[key] = parse_value(value)
    return tuple(sorted(out.items()))


def nest(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """``(("generation.k", 4), ("limit", 20))`` -> ``{"generation": {"k": 4}, "limit": 20}`` (one level of dots)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        head, dot, sub = key.partition(".")
        if dot:
            out.setdefault(head, {})[sub] = value
        else:
            out[key] = value
    return out


def split_commas(values: Iterable[str] | str | None) -> list[str]:
    """``a,b`` (or several such options) as a list of names, blanks dropped."""
    if not values:
        return []
    if isinstance(values, str):
        values = (values,)
    return [v.strip() for item in values for v in item.split(",") if v.strip()]
