"""RealToxicityPrompts-style tasks: data loading, lm-eval hooks and the toxbench summary.

Every toxicity task (RTP, RTP-LX, the parallel RTP-LX prompts) turns its records into the same flat docs:
``{"prompt_id", "prompt", "prompt_toxicity" (0-1 or None), "lang"}``, so one ``summarize`` serves them all.

lm-eval samples ``repeats: k`` continuations per doc; the YAMLs keep all of them with the ``custom`` filter and
``keep_all`` (lm-eval's default filter would keep only the first). ``process_results`` stays cheap (it only
counts continuations); the scoring happens once per task in ``summarize``, in one batched scorer call, inside the
run's context (scorer, seed).

Sampling defaults (the YAMLs): k=25 continuations of 20 new tokens, nucleus sampling top_p=0.9, temperature 1,
no top-k -- Gehman et al. 2020 (RTP) and DExperts (``scripts/our_scripts/toxicity/gpt2.sh``: ``--p 0.9``,
``--n 25``, ``--max-tokens 20``). For reference, AurA's ``scripts/evaluate_toxicity.py`` (apple/ml-aura) samples 25
x 20 tokens with transformers' defaults (top_k=50, top_p=1) on 1,000 prompts shuffled with ``random.seed(0)``, and
cross-lingual-detox (RTP-LX, Li et al. 2024) samples 25 x 20 tokens with temperature 0.9, top_p 0.8 (vLLM).
"""

from __future__ import annotations

import html
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from toxbench.harness.core.defaults import DEFAULT_SEED
from toxbench.harness.core.errors import UsageError
from toxbench.harness.measure.metrics import TOX_THRESHOLD, group_mean
from toxbench.harness.measure.scorers import DEFAULT_SCORER, get_scorer
from toxbench.harness.measure.toxicity import distinct_n, script_share, toxicity_metrics
from toxbench.tasks.datafiles import data_root, hub_dataset, read_records

#: The task-metadata key (the runner's, or lm-eval ``--metadata``) and the env var naming a user's RTP-format JSONL
#: for the ``rtp`` task.
RTP_DATA_ENV = "TOXBENCH_RTP_DATA"
RTP_DATA_KEY = "rtp_data"


# --- data -----------------------------------------------------------------------------------------------------


def _to_dataset(docs: list[dict], split: str):
    import datasets

    features = datasets.Features(
        {
            "prompt_id": datasets.Value("string"),
            "prompt": datasets.Value("string"),
            "prompt_toxicity": datasets.Value("float64"),
            "lang": datasets.Value("string"),
        }
    )
    return datasets.DatasetDict({split: datasets.Dataset.from_list(docs, features=features)})


def _line_of_record(path: Path, index: int) -> int:
    """1-based line number of the ``index``-th non-blank line (records skip blank lines)."""
    n = -1
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                n += 1
                if n == index:
                    return lineno
    return index + 1


def rtp_docs(records: Iterable[dict], source: str, path: Path | None = None, lang: str = "en") -> list[dict]:
    """RTP records (``{"prompt": {"text", "toxicity"}, "filename", "begin", "end"}``) -> flat docs.

    A record without ``prompt.text`` is a UsageError naming the file and line.
    """
    docs = []
    for i, r in enumerate(records):
        p = r.get("prompt") if isinstance(r, dict) else None
        text = p.get("text") if isinstance(p, dict) else (p if isinstance(p, str) else None)
        if not isinstance(text, str):
            where = f"{path}:{_line_of_record(path, i)}" if path is not None else f"{source} record {i}"
            raise UsageError(f"not an RTP record in {where}: needs a string at prompt.text")
        tox = p.get("toxicity") if isinstance(p, dict) else None
        if "filename" in r:
            pid = f"{r['filename']}:{r.get('begin', '')}-{r.get('end', '')}"
        else:
            pid = f"{source}:{i}"
        docs.append({
            "prompt_id": pid, "prompt": text, "prompt_toxicity": None if tox is None else float(tox), "lang": lang,
        })
    return docs


def _user_rtp_file(explicit: str | None) -> str | None:
    return explicit or os.environ.get(RTP_DATA_ENV) or None


def _hub_rows(hub: dict):
    hub = {"split": "train", **hub}
    return hub_dataset(**hub)[hub["split"]]


def rtp_dataset(
    data_file: str | None = None,
    split: str = "test",
    hub: dict | None = None,
    rtp_data: str | None = None,
    user_file: bool = False,
    toxbench_data_dir: str | None = None,
    **_: Any,
):
    """``custom_dataset`` for RTP tasks.

    ``user_file: true`` (the ``rtp`` task): read the user's RTP-format JSONL named by ``rtp_data`` (task metadata:
    the runner's ``--data``, or lm-eval ``--metadata``) or ``$TOXBENCH_RTP_DATA``; without one, the hub data set
    ``hub`` (offline: a one-line error saying how to pass a file). Otherwise ``data_file`` under the data dir.
    """
    root = data_root(toxbench_data_dir)
    if user_file:
        chosen = _user_rtp_file(rtp_data)
        if chosen is None:
            if not hub:
                raise UsageError(f"no RTP file given: set ${RTP_DATA_ENV} or pass --data FILE")
            try:
                ds = _hub_rows(hub)
            except UsageError as e:
                raise UsageError(f"{e}; or pass your RTP-format JSONL with --data FILE (or ${RTP_DATA_ENV})") from None
            return _to_dataset(rtp_docs(ds, source=hub.get("path", "hub")), split)
        path = Path(chosen).expanduser()
        if not path.is_absolute() and not path.exists():
            path = root / chosen
        if not path.exists():
            raise UsageError(f"RTP data file {chosen!r} not found")
        docs = rtp_docs(read_records(str(path.resolve()), "jsonl"), source=path.name, path=path)
        if not docs:
            raise UsageError(f"RTP data file {str(path)!r} is empty; expected one RTP record per line")
        return _to_dataset(docs, split)

    if data_file is None:
        raise UsageError("RTP task declares no data_file")
    path = root / data_file
    if not path.exists():
        if hub:
            ds = _hub_rows(hub)
            return _to_dataset(rtp_docs(ds, source=hub.get("path", "hub")), split)
        raise UsageError(f"data file {data_file!r} not found under the data dir {str(root)!r}")
    return _to_dataset(rtp_docs(read_records(str(path), "jsonl"), source=Path(data_file).name, path=path), split)


def _prompt_records(data_file: str, what: str, a_record: str, root: Path) -> Iterator[tuple[int, dict, str]]:
    """(index, record, its ``Prompt``) of a per-language JSON Lines file under the data dir ``root``; a missing file
    or a record without a string ``Prompt`` is a UsageError naming the file (and line)."""
    path = root / data_file
    if not path.exists():
        raise UsageError(f"{what} file {data_file!r} not found under the data dir {str(root)!r}")
    for i, r in enumerate(read_records(str(path), "jsonl")):
        text = r.get("Prompt")
        if not isinstance(text, str):
            raise UsageError(f"not {a_record} in {path}:{_line_of_record(path, i)}: needs a string Prompt")
        yield i, r, text


def rtp_lx_dataset(data_file: str, lang: str, split: str = "test", toxbench_data_dir: str | None = None, **_: Any):
    """RTP-LX per-language file (JSON Lines despite ``.json``): ``Prompt``, ``Locale``, ``Index``, ``Annotations``.

    Prompt toxicity is the annotators' mean ``Annotations.Toxicity`` on its 1-5 scale mapped linearly to 0-1
    (``(t - 1) / 4``), so the 0.5 split means a mean rating >= 3.
    """
    docs = []
    for i, r, text in _prompt_records(data_file, "RTP-LX", "an RTP-LX record", data_root(toxbench_data_dir)):
        t = (r.get("Annotations") or {}).get("Toxicity")
        docs.append({
            "prompt_id": f"{r.get('Locale', lang)}-{r.get('Index', i)}",
            "prompt": text,
            "prompt_toxicity": None if t is None else (float(t) - 1.0) / 4.0,
            "lang": lang,
        })
    return _to_dataset(docs, split)


def pairwise_dataset(data_file: str, lang: str, split: str = "test", unescape_html: bool = True,
                     toxbench_data_dir: str | None = None, **_: Any):
    """The 200 parallel translated RTP-LX prompts (one ``Prompt`` per line; line i is the same prompt in every
    language, so ``prompt_id`` is ``pairwise-<i>`` in all of them). The machine translations carry HTML entities
    (``&quot;``, ``&#39;``) that the English file does not; ``unescape_html`` undoes them."""
    docs = []
    for i, _, text in _prompt_records(data_file, "pairwise", "a pairwise record", data_root(toxbench_data_dir)):
        docs.append({
            "prompt_id": f"pairwise-{i}",
            "prompt": html.unescape(text) if unescape_html else text,
            "prompt_toxicity": None,
            "lang": lang,
        })
    return _to_dataset(docs, split)


# --- lm-eval hooks --------------------------------------------------------------------------------------------


def keep_all(resps, docs):
    """Identity filter: keep all k continuations of each doc (lm-eval's default keeps the first)."""
    return resps


def _continuations(results: Any) -> list[str]:
    """A doc's continuations from ``results`` / ``filtered_resps`` (``[[c1..ck]]``, ``[c1..ck]`` or ``c``)."""
    if isinstance(results, str):
        return [results]
    res = list(results)
    if len(res) == 1 and isinstance(res[0], (list, tuple)):
        res = list(res[0])
    return [r if isinstance(r, str) else str(r) for r in res]


def process_results(doc: dict, results: list) -> dict:
    """Cheap per-doc value for lm-eval (the toxicity metrics come from ``summarize``): how many continuations.
    Not named ``continuations``: that is the sample rows' field holding the texts."""
    return {"n_continuations": len(_continuations(results))}


# --- toxbench summary -----------------------------------------------------------------------------------------


def _cfg_get(task_config: Any, key: str, default: Any = None) -> Any:
    if isinstance(task_config, dict):
        return task_config.get(key, default)
    return getattr(task_config, key, default)


def summarize(samples: list[dict], task_name: str, task_config: Any, scorer: Any = None,
              seed: int = DEFAULT_SEED) -> dict:
    """Score every continuation in one batched call with ``scorer`` (default: the English default scorer), then
    EMT / probability / fraction (+ splits, CIs) and dist-n.

    Returns ``{"metrics", "protocol", "samples"}`` (one sample row per prompt, in doc order).
    """

    meta = _cfg_get(task_config, "metadata") or {}
    gen = dict(_cfg_get(task_config, "generation_kwargs") or {})
    samples = sorted(samples, key=lambda s: s.get("doc_id", 0))
    docs = [s.get("doc") or {} for s in samples]
    conts = [_continuations(s.get("filtered_resps", s.get("resps", []))) for s in samples]
    lang = meta.get("lang") or (docs[0].get("lang") if docs else None) or "en"

    if scorer is None:
        scorer = get_scorer(DEFAULT_SCORER)
    ok = bool(scorer.supports(lang))
    warn = None
    if not ok:
        warn = (f"scorer {scorer.id} does not support language {lang!r} (task {task_name}); "
                "its scores on these continuations are not reliable")
        warnings.warn(warn, stacklevel=2)

    flat = [c for cs in conts for c in cs]
    heads = scorer.score_heads(flat, lang=lang) if flat else {}
    main = scorer.heads[0]
    tox = np.asarray(heads.get(main, np.zeros(0)), dtype=np.float64)
    bounds = np.cumsum([0] + [len(cs) for cs in conts])
    per_prompt = [tox[bounds[i]:bounds[i + 1]] for i in range(len(conts))]

    ptox = [d.get("prompt_toxicity") for d in docs]
    metrics = toxicity_metrics(per_prompt, ptox, seed=seed)
    metrics.update(distinct_n(conts))
    metrics.update(script_share(conts, lang))  # {} for Latin-script languages

    rows = _sample_rows(samples, docs, conts, heads, main, bounds, lang)
    protocol = _protocol(scorer, gen, conts, lang, ok)
    if warn:
        protocol["warnings"] = [warn]
    return {"metrics": metrics, "protocol": protocol, "samples": rows}


def _sample_rows(samples: list[dict], docs: list[dict], conts: list[list[str]], heads: dict, main: str,
                 bounds: np.ndarray, lang: str) -> list[dict]:
    """One row per prompt: its continuations and every scorer head's scores for them."""
    rows = []
    for i, (s, d, cs) in enumerate(zip(samples, docs, conts)):
        sl = slice(bounds[i], bounds[i + 1])
        scores = {h: [float(x) for x in np.asarray(v)[sl]] for h, v in heads.items()}
        rows.append({
            "doc_id": s.get("doc_id", i), "prompt_id": d.get("prompt_id"), "prompt": d.get("prompt"),
            "prompt_toxicity": d.get("prompt_toxicity"), "lang": d.get("lang", lang), "continuations": cs,
            "toxicity": scores.get(main, []), "max_toxicity": max(scores.get(main, []), default=None),
            "scores": scores,
        })
    return rows


def _protocol(scorer: Any, gen: dict, conts: list[list[str]], lang: str, ok: bool) -> dict[str, Any]:
    """The scorer (name, version, calibration), sampling and language the toxicity metrics were measured under."""
    ks = sorted({len(cs) for cs in conts})
    describe = scorer.describe() if hasattr(scorer, "describe") else {}
    return {
        "scorer": {
            **{k: v for k, v in describe.items() if isinstance(v, (str, int, float, bool, list, tuple, type(None)))},
            "name": getattr(scorer, "name", describe.get("name")),
            "version": getattr(scorer, "version", describe.get("version")),
            "id": getattr(scorer, "id", None),
            "calibration": describe.get("calibration"),
        },
        "k": ks[0] if len(ks) == 1 else ks,
        "max_new_tokens": gen.get("max_gen_toks"),
        "sampling": {key: gen.get(key) for key in ("do_sample", "temperature", "top_p", "top_k")},
        "lang": lang,
        "scorer_language_ok": ok,
        "threshold": TOX_THRESHOLD,
        "n_prompts": len(conts),
    }


def summarize_group(task_metrics: dict[str, dict]) -> dict:
    """Group metrics (e.g. ``rtp_lx_17``): unweighted mean over member tasks of each metric they all report."""
    return {"metrics": group_mean(task_metrics)}
