"""`toxbench scorers eval --data FILE`: the agreement table on a user's own labelled JSONL / CSV, and one-line errors
for malformed files. Fast: a fake scorer (score = text length / 100) on files written here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from click.testing import CliRunner

from toxbench.harness.core.errors import UsageError
from toxbench.harness.measure.scorers import SCORERS
from toxbench.harness.measure.scorers.base import Scorer
from toxbench.harness.measure.scorers.labelled import load_labelled


class LengthScorer(Scorer):
    name = "length"
    version = "1"
    languages = None
    defaults: ClassVar[dict[str, Any]] = {}

    def score_heads(self, texts: list[str], lang: str | None = None) -> dict[str, np.ndarray]:
        return {"toxicity": np.array([min(len(t) / 100, 1.0) for t in texts])}


@pytest.fixture(autouse=True)
def length_registered():
    SCORERS.register("length", LengthScorer)
    yield
    SCORERS._targets.pop("length", None)


# (text, perspective-like score, binary label, language); the score is length-driven so ROC-AUC is 1
ROWS = [("a" * 10, 0.1, 0, "en"), ("b" * 80, 0.9, 1, "en"), ("c" * 20, 0.2, 0, "de"), ("d, e" * 20, 0.7, 1, "de"),
        ("e" * 30, 0.3, 0, "de")]


def _jsonl(path: Path) -> Path:
    path.write_text("".join(json.dumps({"text": t, "toxicity": s, "lang": g}) + "\n" for t, s, _, g in ROWS))
    return path


def _csv(path: Path) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["comment", "is_toxic", "language"])
        for t, _, y, g in ROWS:
            w.writerow([t, y, g])
    return path


def _eval(*args: str):
    from toxbench.harness.cli.scorers import scorers

    return CliRunner().invoke(scorers, ["eval", "-s", "length", *args])


def _table_rows(output: str) -> dict[str, list[str]]:
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in output.splitlines() if ln.startswith("| length")]
    return {r[1]: r for r in rows}


def test_jsonl_with_scores_and_languages(tmp_path) -> None:
    path = _jsonl(tmp_path / "mine.jsonl")
    r = _eval("--data", str(path), "--lang-column", "lang", "--cache-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert "ROC-AUC" in r.output and "calib. error" in r.output and "texts/s" in r.output
    rows = _table_rows(r.output)
    assert set(rows) == {"all", "en", "de"}
    assert rows["all"][2] == "5" and rows["de"][2] == "3" and rows["all"][3] == "1.000"


def test_csv_with_binary_label_and_output(tmp_path) -> None:
    path = _csv(tmp_path / "mine.csv")
    out = tmp_path / "table.csv"
    r = _eval("--data", str(path), "--text-column", "comment", "--label-column", "is_toxic", "--cache-dir",
              str(tmp_path), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "is_toxic (binary)" in r.output and set(_table_rows(r.output)) == {"all"}
    import pandas as pd

    df = pd.read_csv(out)
    assert df.loc[0, "roc_auc"] == 1.0 and df.loc[0, "reference_flagged"] == pytest.approx(0.4)


def test_label_column_guessed_and_values(tmp_path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("text,label\nshort,false\n" + "x" * 90 + ",true\n")
    d = load_labelled(path)
    assert d.texts[0] == "short" and d.reference.tolist() == [0.0, 1.0] and not d.is_score and d.langs is None


@pytest.mark.parametrize("content, pattern", [
    (b"", r"empty file"),
    (b"   \n\n", r"empty file"),
    (b'{"text": "a", "toxicity": 0.1}\n{"text": "b", "toxicity": \n', r"bad\.jsonl:2: not valid JSON"),
    (b'{"text": "a", "toxicity": 0.1}\n[1, 2]\n', r"bad\.jsonl:2: a JSON list"),
    (b'{"text": "a", "toxicity": 0.1}\n{"txt": "b", "toxicity": 0.2}\n', r"bad\.jsonl:2: no column 'text'.*--text-column"),
    (b'{"text": "a", "toxicity": 1.5}\n', r"bad\.jsonl:1: score 1\.5 .* not a number in \[0, 1\]"),
    (b'{"text": "a", "other": 1}\n', r"bad\.jsonl:1: no reference column.*--score-column"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"bad\.jsonl:1: binary file"),
    (b'{"text": "caf\xe9", "toxicity": 0.1}\n', r"bad\.jsonl:1: not UTF-8"),
])
def test_malformed_jsonl_is_one_line_error(tmp_path, content: bytes, pattern: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=pattern) as e:
        load_labelled(path)
    assert "\n" not in str(e.value)
    r = _eval("--data", str(path), "--cache-dir", str(tmp_path))
    assert r.exit_code == 2 and r.output.startswith("Error: ") and r.output.strip().count("\n") == 0


@pytest.mark.parametrize("content, args, pattern", [
    ("text,label\na,0\nb,maybe\n", [], r"bad\.csv:3: label 'maybe' .* not 0/1"),
    ("text,label\na,0\nb,1,extra\n", [], r"bad\.csv:3: 3 fields, the header has 2"),
    ("text,label\na,0\n", ["--lang-column", "lang"], r"bad\.csv:2: no column 'lang'.*--lang-column"),
    ("text,label\na,0\n", ["--score-column", "s", "--label-column", "label"], r"not both"),
    ("text,label\n", [], r"no records"),
])
def test_malformed_csv_is_one_line_error(tmp_path, content: str, args: list[str], pattern: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    r = _eval("--data", str(path), "--cache-dir", str(tmp_path), *args)
    assert r.exit_code == 2, r.output
    assert r.output.strip().count("\n") == 0
    import re

    assert re.search(pattern, r.output), r.output


def test_missing_file_and_options_without_data(tmp_path) -> None:
    r = _eval("--data", str(tmp_path / "nope.jsonl"))
    assert r.exit_code == 2 and "no such file" in r.output and r.output.strip().count("\n") == 0
    r = _eval("--lang-column", "lang")
    assert r.exit_code == 2 and "need --data" in r.output
