"""Checks of a RunSpec that need no model: every bad input is a one-line UsageError before anything loads.

``validate_inputs(spec)`` (called by ``runner.validate``) checks the generation settings and their ranges, the
``--data`` file (read in full: empty, binary, malformed JSON, missing fields -> file:line), the output dir (a
directory we can write), the ``--intervention-state`` file (a safetensors file with a model fingerprint) and runs
the scorer's ``preflight()`` (key, endpoint). Nothing is written: the run dir appears only after all of this passes.
``check_run_dir`` then reads an existing run dir's JSON files, so a damaged one is named instead of a traceback.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from ...interventions import INTERVENTIONS, split_names
from ..core.errors import UsageError
from ..core.io import iter_jsonl
from ..core.paths import cache_dir as resolve_cache_dir
from ..measure.scorers import SCORERS, get_scorer
from ..measure.scorers.base import Scorer, check_options
from ..spec.runspec import RunSpec

#: (field of GenerationSettings / RunSpec, valid range in words, predicate); the CLI flag is the field's name
#: (``max_new_tokens`` -> ``--max-new-tokens``), so each flag is declared once, in cli/options.py
_RANGES: tuple[tuple[str, str, Any], ...] = (
    ("k", "samples per prompt must be >= 1", lambda v: v >= 1),
    ("max_new_tokens", "must be >= 1", lambda v: v >= 1),
    ("top_p", "must be in (0, 1]", lambda v: 0 < v <= 1),
    # 0 means greedy (lm-eval's convention), so only negative temperatures are meaningless
    ("temperature", "must be > 0 (or 0 for greedy decoding)", lambda v: v >= 0),
    ("top_k", "must be >= 0 (0 = no top-k filtering)", lambda v: v >= 0),
)
_SPEC_RANGES: tuple[tuple[str, str, Any], ...] = (
    ("limit", "must be >= 1 (omit it to evaluate every document)", lambda v: v >= 1),
    ("batch_size", "must be >= 1", lambda v: v >= 1),
    ("max_length", "must be >= 2", lambda v: v >= 2),
    ("threads", "must be >= 1", lambda v: v >= 1),
)


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _bad_number(v: Any) -> bool:
    return isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and math.isnan(v))


def check_setting(field: str, value: Any) -> None:
    """One RunSpec setting against its range (the rule ``check_generation`` applies; CLI callbacks use it too)."""
    for f, rule, ok in _SPEC_RANGES:
        if f == field and value is not None and (_bad_number(value) or not ok(value)):
            raise UsageError(f"{_flag(f)} {value!r} is invalid: {rule}")


def check_generation(spec: RunSpec) -> None:
    """k, max new tokens, top-p, temperature, top-k, limit, batch size... within their valid ranges."""
    checks = [(getattr(spec.generation, f), f, rule, ok) for f, rule, ok in _RANGES]
    checks += [(getattr(spec, f), f, rule, ok) for f, rule, ok in _SPEC_RANGES]
    for value, f, rule, ok in checks:
        if value is None:
            continue
        if _bad_number(value) or not ok(value):
            raise UsageError(f"{_flag(f)} {value!r} is invalid: {rule}")


# -- --data --------------------------------------------------------------------------------------------------
_RTP_HINT = 'expected RealToxicityPrompts JSONL, one {"prompt": {"text": ..., "toxicity": ...}} per line'


def check_rtp_file(path: str | os.PathLike) -> int:
    """Read a user's RTP-format JSONL in full; returns its number of records. Empty, binary, not UTF-8, malformed
    JSON or a record without ``prompt.text`` is a one-line UsageError naming the file and line (never its text)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"--data file {str(path)!r} cannot be read: {e.strerror}") from None
    if not raw.strip():
        raise UsageError(f"--data file {str(path)!r} is empty; {_RTP_HINT}")
    n = 0
    try:
        records = list(iter_jsonl(path))
    except UsageError as e:  # binary, not UTF-8 or malformed JSON, at file:line
        raise UsageError(f"--data file {e}; {_RTP_HINT}") from None
    for lineno, rec in records:
        where = f"{path}:{lineno}"
        prompt = rec.get("prompt") if isinstance(rec, dict) else None
        ptext = prompt.get("text") if isinstance(prompt, dict) else prompt
        if not isinstance(ptext, str):
            raise UsageError(f"not an RTP record in --data file {where}: needs a string at prompt.text")
        tox = prompt.get("toxicity") if isinstance(prompt, dict) else None
        if tox is not None and _bad_number(tox):
            raise UsageError(f"not an RTP record in --data file {where}: prompt.toxicity must be a number or null")
        n += 1
    return n


# -- output dir ------------------------------------------------------------------------------------------------
def check_output_dir(output_dir: str | os.PathLike, run_id: str | None = None) -> None:
    """The output dir (or its nearest existing parent) is a directory we can create files in; nothing is left."""
    out = Path(output_dir).expanduser()
    probe = out
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == out else f"cannot be created: {str(probe)!r} is a file"
        raise UsageError(f"output dir {str(output_dir)!r} {what}, not a directory; pass -o DIR")
    if run_id is not None and (out / run_id).exists() and not (out / run_id).is_dir():
        raise UsageError(f"run dir {str(out / run_id)!r} is a file, not a directory; remove it or pass -o DIR")
    try:  # a real write: os.access says yes to root on read-only mounts and /proc
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".toxbench-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UsageError(f"output dir {str(output_dir)!r} is not writable ({e.strerror} in {str(probe)!r}); "
                         "pass -o DIR") from None


# -- --intervention-state -----------------------------------------------------------------------------------------
def read_safetensors_metadata(path: str | os.PathLike, what: str = "--intervention-state") -> dict[str, Any]:
    """The ``__metadata__`` of a safetensors file (values JSON-decoded where they are JSON), or a one-line error
    when the file is not safetensors. Reads only the header."""
    path = Path(path)
    bad = f"{what} {str(path)!r} is not a safetensors file"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > size - 8 or n > 100 << 20:
                raise UsageError(f"{bad} (no safetensors header); pass a state written by `toxbench fit`")
            header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(f"{bad} (unreadable header); pass a state written by `toxbench fit`") from None
    except OSError as e:
        raise UsageError(f"{what} {str(path)!r} cannot be read: {e.strerror}") from None
    if not isinstance(header, dict):
        raise UsageError(f"{bad} (header is not a mapping); pass a state written by `toxbench fit`")
    try:  # the authoritative check (tensor offsets, dtypes), still without reading tensor data
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - SafetensorError and friends: any failure means "not usable"
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"{bad} ({first[:120]}); pass a state written by `toxbench fit`") from None
    meta: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            meta[k] = v
    return meta


def check_state(spec: RunSpec) -> None:
    """The explicit state file exists, is safetensors, and says which model it was fitted on (unless the user
    passed ``--allow-unfingerprinted-state``: the one check that stops a state being applied to the wrong model)."""
    if not spec.intervention_state:
        return
    raw = spec.intervention_state
    fitted = [n for n in INTERVENTIONS.names() if getattr(INTERVENTIONS.get(n), "needs_fit", False)]
    if not any(getattr(INTERVENTIONS.get(n), "needs_fit", False) for n in split_names(spec.intervention)):
        raise UsageError(f"--intervention-state {raw!r} given, but intervention {spec.intervention!r} has no fitted "
                         f"state; states belong to {', '.join(sorted(fitted))}")
    path = Path(raw)
    if path.is_dir():
        if not (path / "state.safetensors").is_file():
            raise UsageError(f"--intervention-state {raw!r} is a directory without state.safetensors; pass a state "
                             "file or a merged DPO checkpoint dir from `toxbench fit`")
        path = path / "state.safetensors"
    elif not path.is_file():
        raise UsageError(f"--intervention-state {raw!r} not found")
    meta = read_safetensors_metadata(path)
    if not meta.get("model_fingerprint") and not spec.allow_unfingerprinted_state:
        raise UsageError(f"--intervention-state {raw!r} has no model_fingerprint metadata, so nothing shows it was "
                         "fitted on this model; refit it with `toxbench fit`, or pass --allow-unfingerprinted-state")


# -- scorer --------------------------------------------------------------------------------------------------------
_preflighted: set[tuple] = set()


def preflight_scorer(spec: RunSpec) -> None:
    """The scorer's own ``preflight()`` (key, endpoint reachability: one short request), before any generation.

    Only scorers that override ``Scorer.preflight`` are built here (local scorers have nothing to check and can be
    slow to load; remote ones are cheap to build twice). A preflight that passed is not repeated in this process
    for the same scorer, options and environment (a suite validates every run up front)."""
    if not spec.scorer or spec.scorer == "auto":
        return  # the auto scorers are local
    cls = SCORERS.get(spec.scorer)
    opts = dict(spec.scorer_args)
    check_options(cls, opts)
    if getattr(cls, "preflight", Scorer.preflight) is Scorer.preflight:
        return
    cache = resolve_cache_dir(spec.cache_dir or None)
    # keys and endpoints come from the environment too
    key = (spec.scorer, repr(sorted(opts.items())), str(cache), tuple(sorted(os.environ.items())))
    if key in _preflighted:
        return
    get_scorer(spec.scorer, cache_dir=cache, **opts).preflight()
    _preflighted.add(key)


def validate_inputs(spec: RunSpec) -> None:
    """Everything about ``spec`` that can be checked without a model (see the module docstring)."""
    check_generation(spec)
    if spec.data:
        check_rtp_file(spec.data)
    check_state(spec)
    check_output_dir(spec.output_dir, spec.run_id())
    preflight_scorer(spec)


# -- an existing run dir ---------------------------------------------------------------------------------------------
def check_run_dir(run: Any, spec: RunSpec, force: bool) -> None:
    """Read an existing run dir's run_spec.json and results.json before resuming (``--force`` rewrites both):
    damage is a one-line UsageError naming the file and the way out (RunDir's readers), so is another spec."""
    if force or not run.path.is_dir():
        return
    if run.spec_file.exists():
        fp = run.read_spec_file().get("fingerprint")
        if fp and fp != spec.fingerprint():
            raise UsageError(f"run dir {str(run.path)!r} holds another spec (fingerprint {fp}, not "
                             f"{spec.fingerprint()}); pass --force to replace it, or -o another dir")
    run.load_results()
