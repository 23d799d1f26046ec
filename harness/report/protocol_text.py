"""Protocols in words: what a leaderboard's footnotes and headings say about how a number was measured, and
which protocol fields differ between runs (leaderboard and check compare protocols through these)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from ..core.io import canonical_json

#: Protocol fields shown as markers rather than as protocol differences.
MARKER_FIELDS = ("lang", "scorer_language_ok")
#: Protocol fields derived from others (left out of the protocol's identity).
DERIVED_FIELDS = ("warnings",)
#: Protocol fields not printed in footnotes (implied by what is printed).
HIDDEN_FIELDS = ("output_type", "n_prompts", "rolling_context_len", *DERIVED_FIELDS)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys (``{"sampling": {"top_p": .9}}`` -> ``{"sampling.top_p": .9}``)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def protocol_differences(protos: Sequence[dict[str, Any]]) -> list[str]:
    """Dotted protocol keys whose values are not the same in all ``protos`` (marker fields left out)."""
    flats = [flatten({k: v for k, v in p.items() if k not in MARKER_FIELDS}) for p in protos]
    keys = sorted(set().union(*flats)) if flats else []
    return [k for k in keys if len({canonical_json(f.get(k)) for f in flats}) > 1]


def fmt_value(v: Any) -> str:
    """A protocol value as printed: ``none``, long hashes cut to 12 characters, no Markdown table bars."""
    if v is None:
        return "none"
    if isinstance(v, str) and re.fullmatch(r"[0-9a-f]{16,}", v):
        return v[:12]
    return str(v).replace("|", "/")


def describe_scorer(s: Any) -> str:
    """``name vVERSION, calibrated (how)`` / ``, uncalibrated`` from a protocol's scorer record."""
    if not isinstance(s, dict):
        return str(s)
    version = str(s.get("version") or "")
    version = version if not version or version.startswith("v") else "v" + version
    text = " ".join(x for x in (str(s.get("name") or ""), version) if x)
    cal = s.get("calibration")
    return text + (f", calibrated ({cal})" if cal else ", uncalibrated")


def describe_data_hash(h: Any, width: int) -> str:
    """``sha256 <file hash>`` (+ the evaluated docs' hash) from a string or the runner's data_hash dict."""
    if not isinstance(h, dict):
        return f"sha256 {str(h)[:width]}"
    parts = []
    if h.get("file_sha256"):
        parts.append(f"sha256 {str(h['file_sha256'])[:width]}")
    elif h.get("hub"):
        parts.append(f"hub {h['hub']}")
    if h.get("docs_sha256"):
        parts.append(f"docs {str(h['docs_sha256'])[:8]}")
    return " ".join(parts) or canonical_json(h)


def _sampling_text(s: dict[str, Any]) -> str:
    if s.get("do_sample") is False:
        return "greedy"
    return "sampling " + ", ".join(f"{k}={s[k]}" for k in ("temperature", "top_p", "top_k") if k in s)


#: (field, its words) in footnote order; seed and limit are printed even when unset
_IN_WORDS: tuple[tuple[str, Callable[[Any], str]], ...] = (
    ("scorer", lambda v: f"scorer {describe_scorer(v)}"),
    ("k", lambda v: f"k={v}"),
    ("max_new_tokens", lambda v: f"max {v} new tokens"),
    ("sampling", lambda v: _sampling_text(v) if isinstance(v, dict) else ""),
    ("seed", lambda v: f"seed {v}"),
    ("limit", lambda v: f"limit {v}"),
    ("task_version", lambda v: f"task v{v}"),
    ("max_length", lambda v: f"window {v}"),
    ("num_fewshot", lambda v: f"{v}-shot"),
    ("until", lambda v: "stop at " + canonical_json(v).replace("|", "/") if v else ""),
)


def describe_protocol(p: dict[str, Any]) -> str:
    """The footnote text of one task protocol: every field, known ones in words."""
    parts = [text for key, words in _IN_WORDS
             if (p.get(key) is not None or key in ("seed", "limit")) and (text := words(p.get(key)))]
    shown = {*(k for k, _ in _IN_WORDS), "data_hash", *MARKER_FIELDS, *HIDDEN_FIELDS}
    for k, v in sorted(flatten({k: v for k, v in p.items() if k not in shown}).items()):
        parts.append(f"{k}={fmt_value(v)}")
    return "; ".join(parts)
