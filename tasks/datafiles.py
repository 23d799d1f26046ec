"""Data loading for task YAMLs (``custom_dataset: !function``-free: referenced by module path).

A YAML says where its data lives *relative to the data dir* and, optionally, where it lives on the hub:

    custom_dataset: !function ../datafiles.local_dataset     # or a hook module that wraps it
    dataset_kwargs:
      data_file: wikitext/wikitext-2-raw/wiki.test.raw
      reader: wikitext_documents          # jsonl | json | csv | csv_noheader | text | wikitext_documents
      split: test
      hub: {path: EleutherAI/wikitext_document_level, name: wikitext-2-raw-v1, split: test}

The data dir is the run's (``TOXBENCH_DATA``, set by the runner from the RunSpec), else ``../shared/data``.
A missing local file falls back to the hub when a hub source is declared; offline that is a one-line error.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..harness.core.errors import UsageError
from ..harness.core.io import read_jsonl
from ..harness.core.models import hub_reachable
from ..harness.core.paths import data_dir


def _jsonl(path: Path) -> list[dict]:
    return read_jsonl(path)


def _json(path: Path) -> list[dict]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UsageError(f"malformed JSON in {path}:{e.lineno}: {e.msg}") from None
    if isinstance(obj, dict):  # {"data": [...]} or {"id": {...}} layouts
        obj = obj.get("data", list(obj.values()))
    return list(obj)


def _csv(path: Path, header: bool = True, columns: list[str] | None = None) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        if header:
            return [dict(r) for r in csv.DictReader(f)]
        cols = columns or ["text", "label"]
        return [dict(zip(cols, r)) for r in csv.reader(f)]


def _text(path: Path) -> list[dict]:
    return [{"text": line.rstrip("\n")} for line in open(path, encoding="utf-8") if line.strip()]


_TOP_HEADING = re.compile(r"^ = [^=].* = $")


def wikitext_documents(path: Path) -> list[dict]:
    """Split raw WikiText into articles the way ``EleutherAI/wikitext_document_level`` does.

    An article starts at a top-level heading line `` = Title = `` and runs to the next one. Copies that dropped
    the blank `` `` lines between paragraphs (or use CRLF) are normalised back to the original layout, where every
    non-empty line is followed by a line holding one space.
    """
    raw = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    lines = [ln for ln in raw.split("\n") if ln.strip()]
    pages: list[str] = []
    for line in lines:
        if _TOP_HEADING.match(line) or not pages:
            pages.append("")
        pages[-1] += line + "\n \n"
    return [{"page": p} for p in pages]


READERS: dict[str, Callable[..., list[dict]]] = {
    "jsonl": _jsonl,
    "json": _json,
    "csv": _csv,
    "csv_noheader": lambda p, **kw: _csv(p, header=False, **kw),
    "text": _text,
    "wikitext_documents": wikitext_documents,
}


#: The task-metadata key that carries a toxbench run's data dir to ``custom_dataset`` hooks (the runner passes it
#: through lm-eval's TaskManager metadata; plain ``lm_eval --include_path tasks/`` runs read ``$TOXBENCH_DATA``).
DATA_DIR_KEY = "toxbench_data_dir"


def data_root(toxbench_data_dir: str | Path | None = None) -> Path:
    """The data dir a task reads: the run's (task metadata), else ``$TOXBENCH_DATA`` / the default."""
    return Path(toxbench_data_dir) if toxbench_data_dir else data_dir()


def read_records(data_file: str, reader: str | None = None, toxbench_data_dir: str | Path | None = None,
                 **reader_kwargs: Any) -> list[dict]:
    """Records of a file under the data dir (a path with no dir part resolves against the data dir)."""
    path = Path(data_file).expanduser()
    if not path.is_absolute():
        path = data_root(toxbench_data_dir) / data_file
    if not path.exists():
        raise FileNotFoundError(str(path))
    reader = reader or {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}.get(path.suffix, "text")
    if reader not in READERS:
        raise UsageError(f"unknown reader {reader!r} for {data_file}; valid: {', '.join(READERS)}")
    return READERS[reader](path, **reader_kwargs)


def local_dataset(
    data_file: str | None = None,
    reader: str | None = None,
    split: str = "test",
    hub: dict | None = None,
    reader_kwargs: dict | None = None,
    toxbench_data_dir: str | None = None,
    transform: Callable[[dict], dict] | None = None,
    **_: Any,
):
    """``custom_dataset`` entry for YAMLs: a DatasetDict with one split from the data dir (each record through
    ``transform``, e.g. to the hub's schema), or else from the hub (already in its schema)."""
    import datasets

    try:
        if data_file is None:
            raise FileNotFoundError("no local file declared")
        rows = read_records(data_file, reader, toxbench_data_dir, **(reader_kwargs or {}))
        return datasets.DatasetDict({split: datasets.Dataset.from_list([transform(r) for r in rows] if transform
                                                                      else rows)})
    except FileNotFoundError:
        if not hub:
            where = toxbench_data_dir or data_dir(must_exist=False)
            raise UsageError(
                f"data file {data_file!r} not found under the data dir {str(where)!r}; "
                "pass --data-dir or set TOXBENCH_DATA"
            ) from None
    return from_hub(hub, split)


def from_hub(hub: dict, split: str):
    """The hub copy, under our split name (the YAMLs read ``test``; the hub split is often ``validation``)."""
    import datasets

    kw = dict(hub)
    hub_split = kw.pop("split", split)
    ds = hub_dataset(split=hub_split, **kw)
    return datasets.DatasetDict({split: ds[hub_split]})


def hub_dataset(path: str, name: str | None = None, split: str = "test", **kwargs: Any):
    """Load from the hub (users with internet); offline → one-line error saying how to get the data locally."""
    import datasets

    if not hub_reachable():
        raise UsageError(
            f"cannot load data set {path!r}: the hub is unreachable; put the file under the data dir "
            "(--data-dir / TOXBENCH_DATA) or pre-download it with `datasets` while online"
        )
    try:
        ds = datasets.load_dataset(path, name, split=split, **kwargs)
    except Exception as e:  # ConnectionError, OfflineModeIsEnabled, DatasetNotFoundError...
        raise UsageError(
            f"cannot load data set {path!r} from the hub ({type(e).__name__}); put the file under the data dir "
            "(--data-dir / TOXBENCH_DATA) or pre-download it with `datasets` while online"
        ) from None
    return datasets.DatasetDict({split: ds})
