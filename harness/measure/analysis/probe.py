"""A linear toxicity probe on the residual stream (Lee et al. 2024; Li, Yong & Bach 2024).

As in both papers the probe reads the final layer's hidden state (after the final norm), mean-pooled over the
tokens of a Jigsaw comment, and is a single bias-free logistic unit trained on binary toxic labels; its weight is
the "toxic direction" that ``toxic_vectors.py`` compares MLP value vectors against.

Deviations (stated in the README): the probe is fitted with scikit-learn's L-BFGS logistic regression on cached
features, its L2 strength chosen by 3-fold CV, instead of Adam over 20 epochs (same model class), and special tokens
(BOS) are left out of the mean pool because their hidden states carry huge attention-sink norms in models that
add a BOS (Gemma, Llama) and would otherwise dominate the pooled vector.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ....interventions.base import State
from ....interventions.responses import pad_batch  # noqa: F401 - re-exported for the analyses
from ...core.defaults import DEFAULT_BATCH_SIZE, DEFAULT_SEED
from ...core.errors import UsageError
from ...core.io import atomic_write_bytes, atomic_write_text, canonical_json, sha256_file, sha256_text

JIGSAW_DEFAULT = "robtest_balanced/test.csv"
#: Bumped when the fitting changes, so cached probes (and the toxic vectors found with them) are not reused.
PROBE_VERSION = 2


# -- data ----------------------------------------------------------------------------------------------------------
def read_jigsaw(
    data_dir: Path, file: str = JIGSAW_DEFAULT, limit: int | None = None, seed: int = DEFAULT_SEED
) -> tuple[list[str], np.ndarray]:
    """Labelled Jigsaw comments from ``jigsaw/<file>`` (see jigsaw/SOURCE.md).

    Reads both layouts found there: Kaggle ``train.csv`` (header with ``comment_text`` and ``toxic``) and the
    header-less two-column ``text,label`` file. ``limit`` draws a label-stratified random subsample.
    """
    path = Path(data_dir) / "jigsaw" / file
    if not path.is_file():
        root = Path(data_dir) / "jigsaw"
        avail = sorted(str(p.relative_to(root)) for p in root.rglob("*.csv")) if root.is_dir() else []
        raise UsageError(f"Jigsaw file {file!r} not found under {str(Path(data_dir) / 'jigsaw')!r}; "
                         f"labelled files there: {', '.join(avail) or 'none'}")
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise UsageError(f"Jigsaw file {str(path)!r} is empty")
    header = [h.strip() for h in rows[0]]
    if "comment_text" in header:
        if "toxic" not in header:
            raise UsageError(f"Jigsaw file {str(path)!r} has no 'toxic' label column (unlabelled test split?)")
        ti, li = header.index("comment_text"), header.index("toxic")
        body = rows[1:]
    elif len(header) == 2 and header[1].strip() in ("0", "1"):
        ti, li, body = 0, 1, rows
    else:
        raise UsageError(f"Jigsaw file {str(path)!r}: expected a Kaggle header (comment_text, toxic) "
                         "or two columns text,label without a header")
    texts = [r[ti] for r in body if len(r) > max(ti, li)]
    labels = np.array([int(float(r[li])) for r in body if len(r) > max(ti, li)], dtype=np.int64)
    if limit is not None and limit < len(texts):
        rng = np.random.default_rng(seed)
        picked: list[int] = []
        for lab in (0, 1):  # stratified: keep the label balance of the file
            idx = np.flatnonzero(labels == lab)
            n = round(limit * len(idx) / len(labels))
            picked.extend(rng.choice(idx, size=min(n, len(idx)), replace=False).tolist())
        picked.sort()
        texts, labels = [texts[i] for i in picked], labels[picked]
    if len(set(labels.tolist())) < 2:
        raise UsageError(f"Jigsaw file {str(path)!r} (limit {limit}) has only one label; use more rows")
    return texts, labels


# -- features ------------------------------------------------------------------------------------------------------
def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def encode(tokenizer: Any, texts: Sequence[str], max_length: int | None) -> list[list[int]]:
    """Token ids per text (with the tokenizer's own special tokens: Gemma needs its BOS)."""
    out = tokenizer(list(texts), add_special_tokens=True, truncation=max_length is not None,
                    max_length=max_length)["input_ids"]
    return [ids if ids else [_pad_id(tokenizer)] for ids in out]


def _pad_id(tokenizer: Any) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if tid is not None:
            return int(tid)
    return 0


@torch.no_grad()
def pooled_hidden_states(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    all_layers: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = 128,
    progress: bool = True,
    desc: str = "hidden states",
) -> torch.Tensor:
    """Mean-pooled hidden states: ``[N, d]`` for the final layer (after the final norm), or ``[L+1, N, d]``
    (embeddings, then each layer; the last is post-norm) with ``all_layers``. float32, on CPU."""
    seqs = encode(tokenizer, texts, max_length)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # length-sorted batches pad less
    device = model_device(model)
    base = getattr(model, "base_model", model)
    chunks: list[torch.Tensor] = []
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
        idx = order[start: start + batch_size]
        ids, mask = pad_batch([seqs[i] for i in idx], _pad_id(tokenizer))
        pool = mask.clone()
        if special:
            is_special = torch.isin(ids, torch.tensor(sorted(special)))
            keep = pool * (~is_special)
            # a text made only of special tokens keeps them rather than pooling nothing
            pool = torch.where(keep.sum(1, keepdim=True) > 0, keep, pool)
        out = base(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=all_layers)
        states = torch.stack(out.hidden_states) if all_layers else out.last_hidden_state[None]
        w = pool.to(device=device, dtype=states.dtype)[None, :, :, None]
        pooled = (states * w).sum(2) / w.sum(2).clamp_min(1)
        chunks.append(pooled.float().cpu())
    feats = torch.cat(chunks, dim=1)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    feats = feats[:, inverse]
    return feats if all_layers else feats[0]


# -- probe ---------------------------------------------------------------------------------------------------------
@dataclass
class ToxicityProbe:
    """The probe weight (toxic direction, ``[d_model]``) and how well it separates held-out comments."""

    weight: torch.Tensor
    bias: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(features.float() @ self.weight.float() + self.bias)

    def save(self, path: str | Path) -> str:
        meta = {**self.metadata, "metrics": self.metrics, "bias": self.bias}
        return State({"probe.weight": self.weight.float()}, meta).save(path)

    @classmethod
    def load(cls, path: str | Path, model_fingerprint: str | None = None) -> ToxicityProbe:
        st = State.load(path, model_fingerprint)
        if "probe.weight" not in st.tensors:
            raise UsageError(f"{str(path)!r} is not a toxicity probe file (no 'probe.weight' tensor)")
        meta = dict(st.metadata)
        return cls(st.tensors["probe.weight"], float(meta.pop("bias", 0.0)), meta.pop("metrics", {}), meta)


def fit_probe(
    features: torch.Tensor, labels: np.ndarray, *, test_frac: float = 0.1, seed: int = DEFAULT_SEED, bias: bool = False
) -> tuple[ToxicityProbe, dict[str, np.ndarray]]:
    """Fit a logistic probe on a stratified split; returns it and the held-out scores/labels (for the plot)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_score, train_test_split

    x = features.float().numpy()
    n_test = max(2, round(test_frac * len(x)))
    if len(x) - n_test < 2:
        raise UsageError(f"too few Jigsaw comments ({len(x)}) to split off a held-out set; raise --limit")
    try:
        tr, te = train_test_split(np.arange(len(x)), test_size=n_test, random_state=seed, stratify=labels)
    except ValueError as e:  # too few comments of one label for a stratified split
        raise UsageError(f"cannot split {len(x)} Jigsaw comments into train/held-out sets ({e}); raise --limit") \
            from None
    # Standardising only rescales the solver's view; the weight is mapped back so it stays a residual direction.
    scale = x[tr].std(0) + 1e-6
    # L2 strength picked by 3-fold CV on the training part: with a few hundred comments in 500-2000 dimensions an
    # unregularised probe memorises the training set.
    def make(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, fit_intercept=bias, max_iter=2000)

    xs = x[tr] / scale
    folds = min(3, int(np.bincount(labels[tr]).min()))
    best_c = 1.0 if folds < 2 else max(
        (0.001, 0.01, 0.1, 1.0, 10.0), key=lambda c: cross_val_score(make(c), xs, labels[tr], cv=folds).mean())
    clf = make(best_c).fit(xs, labels[tr])
    w = clf.coef_[0] / scale
    b = float(clf.intercept_[0]) if bias else 0.0
    probe = ToxicityProbe(torch.tensor(w, dtype=torch.float32), b)
    s_tr = probe.score(torch.from_numpy(x[tr])).numpy()
    s_te = probe.score(torch.from_numpy(x[te])).numpy()
    probe.metrics = {
        "n_train": int(len(tr)),
        "n_test": int(len(te)),
        "train_accuracy": float(((s_tr >= 0.5) == labels[tr]).mean()),
        "test_accuracy": float(((s_te >= 0.5) == labels[te]).mean()),
        "test_auc": float(roc_auc_score(labels[te], s_te)) if len(set(labels[te].tolist())) == 2 else float("nan"),
        "majority_baseline": float(max(labels[te].mean(), 1 - labels[te].mean())),
        "C": best_c,
    }
    return probe, {"scores": s_te, "labels": labels[te]}


@dataclass(frozen=True)
class ProbeSettings:
    jigsaw_file: str = JIGSAW_DEFAULT
    limit: int | None = 2000
    max_length: int = 128
    test_frac: float = 0.1
    seed: int = DEFAULT_SEED

    def key(self, model_fingerprint: str, data_hash: str) -> str:
        return sha256_text(canonical_json({**self.__dict__, "model": model_fingerprint, "data": data_hash,
                                           "version": PROBE_VERSION}))[:16]


def train_probe(
    model: torch.nn.Module,
    tokenizer: Any,
    data_dir: Path,
    settings: ProbeSettings = ProbeSettings(),
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    model_fingerprint: str = "",
    model_name: str = "",
    progress: bool = True,
) -> tuple[ToxicityProbe, dict[str, np.ndarray]]:
    texts, labels = read_jigsaw(data_dir, settings.jigsaw_file, settings.limit, settings.seed)
    feats = pooled_hidden_states(model, tokenizer, texts, batch_size=batch_size, max_length=settings.max_length,
                                 progress=progress, desc="probe features")
    probe, held_out = fit_probe(feats, labels, test_frac=settings.test_frac, seed=settings.seed)
    probe.metadata = {
        "model_fingerprint": model_fingerprint,
        "model": model_name,
        "layer": "final (post-norm), mean-pooled",
        "data_file": f"jigsaw/{settings.jigsaw_file}",
        "data_hash": sha256_file(Path(data_dir) / "jigsaw" / settings.jigsaw_file),
        "settings": dict(settings.__dict__),
    }
    return probe, held_out


def probe_cache_path(cache_dir: Path, data_dir: Path, settings: ProbeSettings, model_fingerprint: str) -> Path:
    """Where the probe for (model, Jigsaw file contents, settings) is cached (``analyze probe`` also fills it)."""
    jfile = Path(data_dir) / "jigsaw" / settings.jigsaw_file
    data_hash = sha256_file(jfile) if jfile.is_file() else "missing"  # missing: train_probe says so
    key = settings.key(model_fingerprint, data_hash)
    return Path(cache_dir) / "analysis" / model_fingerprint[:16] / f"probe-{key}.safetensors"


def cached_probe(
    model: torch.nn.Module,
    tokenizer: Any,
    data_dir: Path,
    cache_dir: Path | None,
    settings: ProbeSettings = ProbeSettings(),
    *,
    model_fingerprint: str,
    model_name: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    log=lambda msg: None,
) -> ToxicityProbe:
    """The probe for (model, data, settings), trained once and kept under ``cache_dir/analysis``."""
    path = probe_cache_path(cache_dir, data_dir, settings, model_fingerprint) if cache_dir is not None else None
    if path is not None and path.is_file():
        return ToxicityProbe.load(path, model_fingerprint)
    log(f"training the toxicity probe on jigsaw/{settings.jigsaw_file} (limit {settings.limit})")
    probe, _ = train_probe(model, tokenizer, data_dir, settings, batch_size=batch_size,
                           model_fingerprint=model_fingerprint, model_name=model_name, progress=progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.save(path)
    return probe


# -- report --------------------------------------------------------------------------------------------------------
def write_probe_report(out: Path, probe: ToxicityProbe, held_out: dict[str, np.ndarray], model_name: str) -> list[Path]:
    """probe.md / probe.csv (metrics), probe.png (held-out score distributions), probe.safetensors (weight)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"model": model_name, "layer": "final", **{k: v for k, v in probe.metrics.items()}}]
    title = f"Toxicity probe ({model_name}, {probe.metadata.get('data_file', '')})"
    files = write_table(out / "probe", rows, title=title)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, 1, 21)
    for lab, name in ((0, "non-toxic"), (1, "toxic")):
        ax.hist(held_out["scores"][held_out["labels"] == lab], bins=bins, alpha=0.6, label=name)
    ax.set_xlabel("probe P(toxic), held-out comments")
    ax.set_ylabel("count")
    ax.set_title(f"{model_name}: held-out accuracy {probe.metrics['test_accuracy']:.3f}")
    ax.legend()
    files.append(save_plot(fig, out / "probe.png"))
    probe.save(out / "probe.safetensors")
    files.append(out / "probe.safetensors")
    return files


# Table and plot writers shared by the analyses (kept here, the first analysis, rather than in a new module).
def write_table(stem: Path, rows: list[dict[str, Any]], title: str = "", floatfmt: str = ".4f") -> list[Path]:
    """``stem.csv`` and ``stem.md`` (a Markdown table under an optional title), both written atomically."""
    import pandas as pd

    df = pd.DataFrame(rows)
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    atomic_write_text(stem.with_suffix(".csv"), buf.getvalue())
    md = (f"# {title}\n\n" if title else "") + df.to_markdown(index=False, floatfmt=floatfmt) + "\n"
    atomic_write_text(stem.with_suffix(".md"), md)
    return [stem.with_suffix(".csv"), stem.with_suffix(".md")]


def save_plot(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure atomically as PNG and close it."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
