"""``jigsaw-bilstm``: a torch port of the Keras BiLSTM shipped in PyPI ``toxic-comment-classifier==0.3.0``.

The package's own code imports TensorFlow and unpickles its tokenizer, so we never import it: we find its files,
read the ``.h5`` weights with h5py, and convert the pickled Keras ``Tokenizer`` once to JSON with a restricted
unpickler (a stub class instead of Keras). At run time only the JSON and the h5 are read.

Architecture (from the package's ``model.py``; the weights file is weights-only, Keras 3 layout)::

    Input(100) -> Embedding(20000, 50) -> Bidirectional(LSTM(50, return_sequences=True))   # concat [fwd, bwd]
      -> GlobalMaxPooling1D -> Dense(50, relu) -> Dropout -> Dense(6, sigmoid)

Keras LSTM defaults: tanh activation, sigmoid recurrent activation, gate order i, f, c, o (the same as torch's
i, f, g, o), one bias vector. Preprocessing as the package's ``classify``: ``tokenizer.texts_to_sequences`` then
``pad_sequences(maxlen=100)`` (pre-padding and pre-truncating with 0, so the last 100 tokens are kept); no masking.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...core.errors import UsageError
from ...core.io import atomic_write_json, sha256_file
from .base import Scorer

PACKAGE = "toxic_classifier"
PACKAGE_PIN = "toxic-comment-classifier==0.3.0"
MAXLEN = 100
LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"'})


def normalize_quotes(text: str) -> str:
    """Curly quotes -> straight ones: the Jigsaw vocabulary knows ``don't`` but not ``don’t``."""
    return text.translate(_QUOTES)


def package_files() -> tuple[Path, Path]:
    """(weights .h5, tokenizer .pickle) of the installed package, located without importing it (it imports TF)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"scorer 'jigsaw-bilstm' needs the package files: pip install --no-deps {PACKAGE_PIN}")
    root = Path(list(spec.submodule_search_locations)[0]) / "model"
    weights, tok = root / "model.weights.h5", root / "tokenizer.pickle"
    for p in (weights, tok):
        if not p.is_file():
            raise UsageError(f"{p} is missing; reinstall with: pip install --no-deps --force-reinstall {PACKAGE_PIN}")
    return weights, tok


# ---------------------------------------------------------------------------------------------------- tokenizer
class _KerasTokenizerStub:
    """Receives the pickled Tokenizer's ``__dict__``; has no behaviour, so unpickling runs no Keras code."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class _RestrictedUnpickler(pickle.Unpickler):
    _ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("collections", "defaultdict"): defaultdict,
        ("builtins", "int"): int,
        ("builtins", "dict"): dict,
        ("builtins", "list"): list,
    }

    def find_class(self, module: str, name: str) -> Any:
        if name == "Tokenizer" and module.startswith(("keras", "tensorflow")):
            return _KerasTokenizerStub
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the tokenizer pickle")


def convert_tokenizer(pickle_path: Path) -> dict:
    """The Keras Tokenizer pickle as a plain dict (only what ``texts_to_sequences`` uses, capped to num_words)."""
    with open(pickle_path, "rb") as f:
        tok = _RestrictedUnpickler(f).load()
    if not isinstance(tok, _KerasTokenizerStub):
        raise UsageError(f"{pickle_path} does not hold a Keras Tokenizer")
    st = tok.__dict__
    if st.get("char_level") or st.get("analyzer") is not None:
        raise UsageError(f"{pickle_path}: unsupported Tokenizer settings (char_level/analyzer)")
    num_words = st.get("num_words")
    # texts_to_sequences keeps an index i only if i < num_words (so 19,999 words for num_words=20000)
    word_index = {w: int(i) for w, i in st["word_index"].items() if not num_words or int(i) < num_words}
    return {
        "filters": st["filters"], "lower": bool(st["lower"]), "split": st["split"],
        "num_words": num_words, "oov_token": st.get("oov_token"),
        "oov_index": st["word_index"].get(st["oov_token"]) if st.get("oov_token") is not None else None,
        "word_index": word_index,
    }


class KerasTokenizer:
    """Keras' legacy ``Tokenizer.texts_to_sequences`` + ``pad_sequences`` (pre, pre), from the converted JSON."""

    def __init__(self, cfg: dict) -> None:
        self.lower, self.split = cfg["lower"], cfg["split"]
        self.num_words, self.oov_index = cfg["num_words"], cfg["oov_index"]
        self.table = str.maketrans({c: self.split for c in cfg["filters"]})
        self.word_index: dict[str, int] = cfg["word_index"]

    def text_to_sequence(self, text: str) -> list[int]:
        if self.lower:
            text = text.lower()
        seq = []
        for w in text.translate(self.table).split(self.split):
            if not w:
                continue
            i = self.word_index.get(w)
            if i is not None:
                seq.append(i)
            elif self.oov_index is not None:  # words beyond num_words were dropped from word_index at conversion
                seq.append(self.oov_index)
        return seq

    def encode(self, texts: Sequence[str], maxlen: int = MAXLEN) -> np.ndarray:
        out = np.zeros((len(texts), maxlen), dtype=np.int64)
        for r, t in enumerate(texts):
            seq = self.text_to_sequence(t)[-maxlen:]  # truncating='pre'
            if seq:
                out[r, maxlen - len(seq):] = seq  # padding='pre'
        return out


def load_tokenizer(pickle_path: Path, cache_dir: Path | None) -> tuple[KerasTokenizer, Path | None]:
    """The tokenizer from its JSON in the cache, converting the pickle once (restricted) if the JSON is missing."""
    if cache_dir is None:
        return KerasTokenizer(convert_tokenizer(pickle_path)), None
    digest = sha256_file(pickle_path)[:16]
    path = Path(cache_dir) / "scorers" / "jigsaw-bilstm" / f"tokenizer-{digest}.json"
    if not path.is_file():
        atomic_write_json(path, convert_tokenizer(pickle_path))
    return KerasTokenizer(json.loads(path.read_text(encoding="utf-8"))), path


# ---------------------------------------------------------------------------------------------------- weights
def read_weights(h5_path: Path) -> dict[str, np.ndarray]:
    """The Keras 3 weights-only h5 as named arrays (Keras layouts: kernels are (in, out))."""
    import h5py

    names = {
        "embedding": "layers/embedding/vars/0",
        "fwd_kernel": "layers/bidirectional/forward_layer/cell/vars/0",
        "fwd_recurrent": "layers/bidirectional/forward_layer/cell/vars/1",
        "fwd_bias": "layers/bidirectional/forward_layer/cell/vars/2",
        "bwd_kernel": "layers/bidirectional/backward_layer/cell/vars/0",
        "bwd_recurrent": "layers/bidirectional/backward_layer/cell/vars/1",
        "bwd_bias": "layers/bidirectional/backward_layer/cell/vars/2",
        "dense_kernel": "layers/dense/vars/0", "dense_bias": "layers/dense/vars/1",
        "out_kernel": "layers/dense_1/vars/0", "out_bias": "layers/dense_1/vars/1",
    }
    with h5py.File(h5_path, "r") as f:
        try:
            return {k: np.asarray(f[v], dtype=np.float32) for k, v in names.items()}
        except KeyError as e:
            raise UsageError(f"{h5_path} does not have the expected Keras layout ({e})") from None


def build_torch_model(w: dict[str, np.ndarray]):
    """A torch module computing the Keras graph exactly (eval mode: dropout is the identity)."""
    import torch
    from torch import nn

    class BiLSTMNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            vocab, dim = w["embedding"].shape
            units = w["fwd_recurrent"].shape[0]
            self.embedding = nn.Embedding(vocab, dim)
            self.lstm = nn.LSTM(dim, units, batch_first=True, bidirectional=True)
            self.dense = nn.Linear(2 * units, w["dense_kernel"].shape[1])
            self.out = nn.Linear(w["dense_kernel"].shape[1], w["out_kernel"].shape[1])

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            h, _ = self.lstm(self.embedding(ids))  # (B, T, 2U), backward half aligned to time like Keras
            x = torch.relu(self.dense(h.amax(dim=1)))
            return torch.sigmoid(self.out(x))

    m = BiLSTMNet()
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    with torch.no_grad():
        m.embedding.weight.copy_(t(w["embedding"]))
        for d, suffix in (("fwd", ""), ("bwd", "_reverse")):
            getattr(m.lstm, f"weight_ih_l0{suffix}").copy_(t(w[f"{d}_kernel"].T))
            getattr(m.lstm, f"weight_hh_l0{suffix}").copy_(t(w[f"{d}_recurrent"].T))
            getattr(m.lstm, f"bias_ih_l0{suffix}").copy_(t(w[f"{d}_bias"]))
            getattr(m.lstm, f"bias_hh_l0{suffix}").zero_()  # Keras has a single bias
        m.dense.weight.copy_(t(w["dense_kernel"].T))
        m.dense.bias.copy_(t(w["dense_bias"]))
        m.out.weight.copy_(t(w["out_kernel"].T))
        m.out.bias.copy_(t(w["out_bias"]))
    return m.eval()


# ---------------------------------------------------------------------------------------------------- scorer
class JigsawBiLSTM(Scorer):
    """The package's BiLSTM; score = the ``toxic`` head (its 6-head mean is badly calibrated), all heads kept."""

    name = "jigsaw-bilstm"
    version = "1"
    languages = ("en",)
    heads = LABELS
    defaults: ClassVar[dict[str, Any]] = {"normalize_quotes": False, "batch_size": 512, "threads": 1}
    #: options that change no output, left out of the cache key
    runtime_options: ClassVar[tuple[str, ...]] = ("batch_size", "threads")
    requires = ("toxic_classifier", "h5py")

    def __init__(self, cache_dir: str | Path | None = None, **options: Any) -> None:
        super().__init__(cache_dir=cache_dir, **options)
        weights, tok = package_files()
        self.tokenizer, self.tokenizer_json = load_tokenizer(tok, self.cache_dir)
        self.model = build_torch_model(read_weights(weights))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.options["normalize_quotes"]:
            texts = [normalize_quotes(t) for t in texts]
        return self.tokenizer.encode(texts)

    def score_heads(self, texts: list[str], lang: str | None = None) -> dict[str, np.ndarray]:
        import torch

        ids = self.encode(texts)
        out = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
        bs = int(self.options["batch_size"])
        prev = torch.get_num_threads()
        torch.set_num_threads(int(self.options["threads"]))  # one thread was fastest on 2 busy cores
        try:
            with torch.inference_mode():
                for s in range(0, len(texts), bs):
                    out[s:s + bs] = self.model(torch.from_numpy(ids[s:s + bs])).numpy()
        finally:
            torch.set_num_threads(prev)
        return {h: out[:, i].astype(np.float64) for i, h in enumerate(LABELS)}
