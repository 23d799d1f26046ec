"""Atomic writes and hashing: a killed run never leaves half a file behind."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UsageError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def iter_jsonl(path: str | os.PathLike, objects: bool = False, torn_tail: bool = False
               ) -> Iterator[tuple[int, Any]]:
    """(line number, record) of every non-blank line of a JSONL file: the one JSONL reader. A line that is binary,
    not UTF-8 or not JSON (or, with ``objects``, not a JSON object) is a UsageError naming the file and line.

    Lines are split on "\n" only: str.splitlines() also breaks at U+2028, U+0085, form feeds..., which generated
    text (written raw with ensure_ascii=False) contains. ``torn_tail`` (files toxbench appends to, flushed per
    record): a malformed last line without a final newline is a write killed midway, and is dropped.
    """
    path = Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for i, raw in enumerate(lines, 1):
        if b"\x00" in raw:
            raise UsageError(f"{path}:{i}: binary data (NUL bytes); expected UTF-8 JSON lines")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"{path}:{i}: not UTF-8 text (byte {e.start}: a binary file?); expected UTF-8 JSON "
                             "lines") from None
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if torn_tail and i == len(lines) and not data.endswith(b"\n"):
                return  # torn final write from a killed run
            raise UsageError(f"{path}:{i}: not valid JSON ({e.msg} at column {e.colno}): a malformed JSON line") \
                from None
        if objects and not isinstance(rec, dict):
            raise UsageError(f"{path}:{i}: a JSON {type(rec).__name__}, expected one JSON object per line")
        yield i, rec


def read_jsonl(path: str | os.PathLike, objects: bool = False, torn_tail: bool = False) -> list[Any]:
    """Every record of a JSONL file (``iter_jsonl``)."""
    return [rec for _, rec in iter_jsonl(path, objects, torn_tail)]


def truncate_torn_tail(path: str | os.PathLike, chunk: int = 1 << 16) -> int:
    """Cut a last line without its newline (a write killed midway) so the next append starts a fresh line;
    returns the bytes removed. Complete lines are never touched."""
    path = Path(path)
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        end = size
        while end > 0:  # scan back for the last newline
            start = max(0, end - chunk)
            f.seek(start)
            nl = f.read(end - start).rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            end = start
        else:
            keep = 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep


def append_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    """Append records and flush, so a kill loses at most the record being written (whose torn remains the next
    append cuts off first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        truncate_torn_tail(path)
    with open(path, "a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
