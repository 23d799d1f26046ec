"""On-disk score cache: sqlite keyed by (scorer id, options hash, sha256(text), lang), all heads stored.

One file shared by every run and process: WAL journal + a busy timeout make concurrent readers and writers safe,
and each batch is written in one transaction (``INSERT OR IGNORE``, so two processes scoring the same text agree).
Look-ups are batched (``IN (...)`` over chunks), so a run of 30,000 continuations costs a few dozen queries.
Scores are only a cache: a file that is not a sqlite database is moved aside (one line on stderr) and an empty cache
takes its place, so a damaged cache never stops a run or costs its generations.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ...core.io import sha256_text
from .base import Scorer, WrappedScorer

_CHUNK = 500  # below sqlite's default limit of bound variables
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    scorer TEXT NOT NULL, options TEXT NOT NULL, text_sha TEXT NOT NULL, lang TEXT NOT NULL,
    heads TEXT NOT NULL, PRIMARY KEY (scorer, options, text_sha, lang)
) WITHOUT ROWID
"""


class ScoreCache:
    """Maps (scorer id, options hash, text, lang) -> {head: float}."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self._local = threading.local()
        try:
            self._init_schema()
        except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
            self.close()
            aside = self._move_aside()
            print(f"warning: score cache {self.path} is unreadable ({e}); moved it to {aside.name} and started an "
                  "empty cache (scores are recomputed)", file=sys.stderr)
            self._init_schema()

    def _init_schema(self) -> None:
        with self._conn() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(_SCHEMA)
            con.execute("SELECT 1 FROM scores LIMIT 1").fetchall()  # reads a page: catches a damaged table early

    def _move_aside(self) -> Path:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            self.path.replace(aside)
        except FileNotFoundError:  # another process moved it first
            pass
        for suffix in ("-wal", "-shm"):  # journal files of the old database must not be applied to the new one
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.replace(aside.with_name(aside.name + suffix))
        return aside

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            con.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        yield con

    def get(self, scorer: str, options: str, texts: list[str], lang: str | None) -> list[dict[str, float] | None]:
        """Cached heads for each text, None where missing."""
        shas = [sha256_text(t) for t in texts]
        found: dict[str, dict[str, float]] = {}
        uniq = list(dict.fromkeys(shas))
        with self._conn() as con:
            for s in range(0, len(uniq), _CHUNK):
                chunk = uniq[s:s + _CHUNK]
                q = (f"SELECT text_sha, heads FROM scores WHERE scorer=? AND options=? AND lang=? "
                     f"AND text_sha IN ({','.join('?' * len(chunk))})")
                for sha, heads in con.execute(q, (scorer, options, lang or "", *chunk)):
                    found[sha] = json.loads(heads)
        return [found.get(s) for s in shas]

    def put(self, scorer: str, options: str, texts: list[str], lang: str | None,
            heads: list[dict[str, float]]) -> None:
        rows = [(scorer, options, sha256_text(t), lang or "", json.dumps(h)) for t, h in zip(texts, heads)]
        with self._conn() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT OR IGNORE INTO scores VALUES (?,?,?,?,?)", rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def count(self, scorer: str | None = None) -> int:
        with self._conn() as con:
            if scorer is None:
                return con.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
            return con.execute("SELECT COUNT(*) FROM scores WHERE scorer=?", (scorer,)).fetchone()[0]

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


class CachedScorer(WrappedScorer):
    """Wraps a scorer: cached texts are read, only the missing ones (deduplicated) are scored, then stored."""

    def __init__(self, inner: Scorer, cache: ScoreCache) -> None:  # noqa: D107 - no options of its own
        self.inner, self.cache = inner, cache
        self.calls = 0  # texts actually sent to the inner scorer (tests and logs)

    # identity is the inner scorer's (WrappedScorer): a cache never changes a result

    def supports(self, lang: str | None) -> bool:
        return self.inner.supports(lang)

    def describe(self) -> dict:
        return self.inner.describe()

    def __getattr__(self, item: str) -> Any:  # e.g. extra evaluation hooks of the inner scorer
        if item in ("inner", "cache"):
            raise AttributeError(item)
        return getattr(self.inner, item)

    def score_heads(self, texts: list[str], lang: str | None = None) -> dict[str, np.ndarray]:
        texts = list(texts)
        sid, opts = self.inner.id, self.inner.options_hash
        got = self.cache.get(sid, opts, texts, lang)
        missing = list(dict.fromkeys(t for t, g in zip(texts, got) if g is None))
        if missing:
            self.calls += len(missing)
            new = self.inner.score_heads(missing, lang)
            rows = [{h: float(v[i]) for h, v in new.items()} for i in range(len(missing))]
            self.cache.put(sid, opts, missing, lang, rows)
            by_text = dict(zip(missing, rows))
            got = [g if g is not None else by_text[t] for t, g in zip(texts, got)]
        names = list(got[0]) if got else list(self.inner.heads)
        return {h: np.array([g[h] for g in got], dtype=np.float64) for h in names}
