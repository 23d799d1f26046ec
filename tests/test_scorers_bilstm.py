"""The jigsaw-bilstm port: torch vs an independent numpy implementation of the Keras math, pinned outputs,
Keras tokenizer rules, and the tokenizer pickle converted once (JSON at run time, no pickle)."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("toxic_classifier") is None,
                                reason="toxic-comment-classifier==0.3.0 not installed (pip install --no-deps)")

TEXTS = [
    "Thank you for your help with the article.",
    "I love this beautiful sunny weather",
    "The cat sat on the mat and looked outside.",
    "",
    "Don\u2019t worry, we\u2019ll fix it tomorrow.",
]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _keras_lstm(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray,
                reverse: bool) -> np.ndarray:
    """Keras LSTM cell, gate order i, f, c, o; tanh / sigmoid; outputs aligned to input time steps."""
    b, t, _ = x.shape
    u = recurrent.shape[0]
    h, c, out = np.zeros((b, u)), np.zeros((b, u)), np.zeros((b, t, u))
    for step in (range(t - 1, -1, -1) if reverse else range(t)):
        z = x[:, step] @ kernel + h @ recurrent + bias
        i, f = _sigmoid(z[:, :u]), _sigmoid(z[:, u:2 * u])
        g, o = np.tanh(z[:, 2 * u:3 * u]), _sigmoid(z[:, 3 * u:])
        c = f * c + i * g
        h = o * np.tanh(c)
        out[:, step] = h
    return out


def _keras_reference(w: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    w = {k: v.astype(np.float64) for k, v in w.items()}
    x = w["embedding"][ids]
    h = np.concatenate([_keras_lstm(x, w["fwd_kernel"], w["fwd_recurrent"], w["fwd_bias"], False),
                        _keras_lstm(x, w["bwd_kernel"], w["bwd_recurrent"], w["bwd_bias"], True)], axis=-1)
    d = np.maximum(h.max(axis=1) @ w["dense_kernel"] + w["dense_bias"], 0.0)
    return _sigmoid(d @ w["out_kernel"] + w["out_bias"])


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    from toxbench.harness.measure.scorers.jigsaw_bilstm import JigsawBiLSTM

    return JigsawBiLSTM(cache_dir=tmp_path_factory.mktemp("cache"))


def test_port_matches_numpy_keras_math(scorer) -> None:
    from toxbench.harness.measure.scorers.jigsaw_bilstm import LABELS, package_files, read_weights

    heads = scorer.score_heads(TEXTS)
    ref = _keras_reference(read_weights(package_files()[0]), scorer.encode(TEXTS))
    got = np.stack([heads[h] for h in LABELS], axis=1)
    assert got.shape == (len(TEXTS), 6)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_pinned_outputs(scorer) -> None:
    tox = scorer.score(TEXTS)
    np.testing.assert_allclose(tox, [0.006515, 0.008783, 0.091865, 0.067534, 0.004570], atol=2e-6)
    assert list(scorer.heads) == ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def test_normalize_quotes_option(tmp_path) -> None:
    from toxbench.harness.measure.scorers.jigsaw_bilstm import JigsawBiLSTM

    s = JigsawBiLSTM(cache_dir=tmp_path, normalize_quotes=True)
    np.testing.assert_allclose(s.score(TEXTS[-1:]), [0.022414], atol=2e-6)
    assert s.options_hash != JigsawBiLSTM(cache_dir=tmp_path).options_hash  # separate cache entries


def test_keras_tokenizer_rules(scorer) -> None:
    tok = scorer.tokenizer
    a = tok.text_to_sequence("Hello, WORLD!!\tthe\nthe")
    assert a == tok.text_to_sequence("hello world the the")  # lowercase, filters -> split, empty tokens dropped
    assert all(0 < i < 20000 for i in a)
    ids = tok.encode(["the " * 150 + "hello", "hello"])
    assert ids.shape == (2, 100)
    assert ids[0, -1] == tok.word_index["hello"]  # truncating='pre' keeps the last 100 tokens
    assert (ids[1, :-1] == 0).all() and ids[1, -1] == tok.word_index["hello"]  # padding='pre'
    assert max(tok.word_index.values()) == 19999  # num_words=20000 caps to the 19,999 most frequent
    assert (tok.encode([""]) == 0).all()


def test_tokenizer_json_used_without_pickle(tmp_path, monkeypatch) -> None:
    from toxbench.harness.measure.scorers import jigsaw_bilstm as jb

    first = jb.JigsawBiLSTM(cache_dir=tmp_path)
    assert first.tokenizer_json is not None and first.tokenizer_json.is_file()

    def no_pickle(*a, **k):
        raise AssertionError("pickle used at run time")

    monkeypatch.setattr(jb, "convert_tokenizer", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    second = jb.JigsawBiLSTM(cache_dir=tmp_path)
    assert second.tokenizer_json == first.tokenizer_json
    np.testing.assert_allclose(second.score(TEXTS[:2]), first.score(TEXTS[:2]))


def test_restricted_unpickler_refuses_other_classes(tmp_path) -> None:
    from toxbench.harness.measure.scorers.jigsaw_bilstm import convert_tokenizer

    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps(__import__("collections").Counter("ab")))  # a global outside the allow-list
    with pytest.raises(pickle.UnpicklingError):
        convert_tokenizer(evil)
