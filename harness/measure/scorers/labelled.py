"""A user's labelled file for ``toxbench scorers eval --data FILE``: JSONL or CSV with a text column and either a
reference score in [0, 1] (e.g. their own Perspective scores; label = score >= 0.5) or a binary label, optionally
a language column. Every problem is one UsageError line naming ``file:line`` and what is valid.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import UsageError
from ...core.io import iter_jsonl

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv", ".tsv")
#: tried in this order when neither --score-column nor --label-column is given
SCORE_GUESSES = ("toxicity", "score", "perspective")
LABEL_GUESSES = ("label", "toxic")
_TRUE = {"1", "true", "yes", "toxic", "1.0"}
_FALSE = {"0", "false", "no", "non-toxic", "nontoxic", "0.0"}


@dataclass(frozen=True)
class LabelledTexts:
    texts: list[str]
    reference: np.ndarray  # reference score in [0, 1], or the 0/1 label
    is_score: bool  # reference is a graded score (Perspective-like) rather than a binary label
    langs: np.ndarray | None  # language code per text, or None
    source: str  # what the reference is, for the table

    @property
    def label(self) -> np.ndarray:
        return self.reference >= 0.5

    def __len__(self) -> int:
        return len(self.texts)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise UsageError(f"--data {str(path)!r}: no such file (expected a JSONL or CSV file)")
    raw = path.read_bytes()
    if not raw.strip():
        raise UsageError(f"{path}: empty file; expected JSONL (one JSON object per line) or CSV with a header row")
    if b"\x00" in raw[:65536]:
        raise UsageError(f"{path}:1: binary file (NUL bytes); expected UTF-8 JSONL or CSV text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 text (byte {e.start}); expected UTF-8 JSONL or CSV") from None


def _records(path: Path, text: str) -> list[tuple[int, dict]]:
    """(line number, record) pairs; JSONL by suffix or by a first character of ``{``, else CSV."""
    suffix = path.suffix.lower()
    jsonl = suffix in JSONL_SUFFIXES or (suffix not in CSV_SUFFIXES and text.lstrip().startswith("{"))
    out: list[tuple[int, dict]] = []
    if jsonl:
        return list(iter_jsonl(path, objects=True))
    delim = "\t" if suffix == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        header = next(reader)
        if len(set(header)) != len(header):
            raise UsageError(f"{path}:1: duplicate column names in the CSV header {header}")
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise UsageError(f"{path}:{reader.line_num}: {len(row)} fields, the header has {len(header)} "
                                 f"({', '.join(header)}); quote fields that contain {delim!r}")
            out.append((reader.line_num, dict(zip(header, row))))
    except csv.Error as e:
        raise UsageError(f"{path}:{reader.line_num}: malformed CSV ({e}); expected a header row then one record "
                         "per row") from None
    return out


def _column(path: Path, records: list[tuple[int, dict]], name: str, option: str) -> None:
    for line, rec in records:
        if name not in rec:
            have = ", ".join(map(str, rec)) or "none"
            raise UsageError(f"{path}:{line}: no column {name!r} (columns: {have}); pass {option} NAME")


def _pick(records: list[tuple[int, dict]], guesses: tuple[str, ...]) -> str | None:
    first = records[0][1]
    return next((g for g in guesses if g in first), None)


def load_labelled(path: str | Path, text_column: str = "text", score_column: str | None = None,
                  label_column: str | None = None, lang_column: str | None = None) -> LabelledTexts:
    """Read and validate a labelled file; see the module docstring."""
    path = Path(path)
    if score_column and label_column:
        raise UsageError("give either --score-column or --label-column, not both")
    records = _records(path, _read_text(path))
    if not records:
        raise UsageError(f"{path}: no records; expected JSONL objects or CSV rows under a header")
    if not (score_column or label_column):
        score_column = _pick(records, SCORE_GUESSES)
        label_column = None if score_column else _pick(records, LABEL_GUESSES)
        if not (score_column or label_column):
            have = ", ".join(map(str, records[0][1]))
            raise UsageError(f"{path}:{records[0][0]}: no reference column (columns: {have}); pass --score-column "
                             "NAME (scores in [0, 1]) or --label-column NAME (0/1)")
    ref_col = score_column or label_column
    _column(path, records, text_column, "--text-column")
    _column(path, records, ref_col, "--score-column" if score_column else "--label-column")
    if lang_column:
        _column(path, records, lang_column, "--lang-column")
    texts, ref, langs = [], [], []
    for line, rec in records:
        t = rec[text_column]
        if not isinstance(t, str):
            raise UsageError(f"{path}:{line}: column {text_column!r} is a {type(t).__name__}, expected text")
        v = rec[ref_col]
        if score_column:
            try:
                x = float(v)
            except (TypeError, ValueError):
                x = float("nan")
            if not 0.0 <= x <= 1.0:
                raise UsageError(f"{path}:{line}: score {v!r} in column {ref_col!r} is not a number in [0, 1]")
        else:
            s = str(v).strip().lower()
            if s not in _TRUE | _FALSE:
                raise UsageError(f"{path}:{line}: label {v!r} in column {ref_col!r} is not 0/1 (or true/false)")
            x = float(s in _TRUE)
        if lang_column:
            lang = rec[lang_column]
            if not isinstance(lang, str) or not lang.strip():
                raise UsageError(f"{path}:{line}: language {lang!r} in column {lang_column!r} is not a language "
                                 "code (e.g. en, de, zh-Hans)")
            langs.append(lang.strip())
        texts.append(t)
        ref.append(x)
    source = f"{ref_col} >= 0.5" if score_column else f"{ref_col} (binary)"
    return LabelledTexts(texts, np.asarray(ref, dtype=np.float64), bool(score_column),
                         np.asarray(langs) if lang_column else None, source)
