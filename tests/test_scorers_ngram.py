"""rtp-ngram: trained end to end on a synthetic data dir (nested CV, head + out-of-fold scores), loaded, scored,
held-out scores looked up for training texts only, identity tied to the head's bytes."""

from __future__ import annotations

import numpy as np
import pytest

from test_scorers_stacked import _write_rtp
from toxbench.harness.core.errors import UsageError
from toxbench.harness.measure.scorers import ngram_train as nt
from toxbench.harness.measure.scorers.ngram_stack import RTPNgram


def _data(root):
    _write_rtp(root)
    jig = root / "jigsaw" / "robtest_balanced" / "test.csv"
    jig.parent.mkdir(parents=True, exist_ok=True)
    jig.write_text("".join(f"comment {i} {'stupid idiot' if i % 2 else 'kind garden'},{i % 2}\n" for i in range(20)))
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ngram")
    root = _data(tmp / "data")
    with pytest.MonkeyPatch.context() as mp:  # the procedure, at the smallest size that still nests
        mp.setattr(nt, "GRID", ((2.0, 1.0), (8.0, 2.0)))
        mp.setattr(nt, "OUTER", 3)
        mp.setattr(nt, "INNER", 2)
        info = nt.train_head(root, tmp / "cache", out=tmp / "head.safetensors")
    return root, tmp, info


def test_training_reports_nested_cv_and_writes_head_and_oof(trained):
    root, tmp, info = trained
    assert (tmp / "head.safetensors").is_file() and nt.oof_path(tmp / "head.safetensors").is_file()
    assert info["counts"] == {"decodingtrust": 216, "random": 48}
    assert len(info["outer_choices"]) == 3 and tuple(info["outer_choices"][0]) in ((2.0, 1.0), (8.0, 2.0))
    assert {"random/all", "random/prompt", "random/continuation", "decodingtrust/generation"} <= set(info["nested_cv"])
    assert all(0 <= v <= 1 for v in info["nested_cv"].values())
    head = nt.NgramHead.load(tmp / "head.safetensors")
    assert head.qmap_x is not None and (np.diff(head.qmap_x) > 0).all() and (np.diff(head.qmap_y) >= 0).all()


def test_quantile_map_gives_the_target_distribution():
    rng = np.random.default_rng(0)
    target = rng.beta(0.5, 2.0, 4000)
    scores = 0.1 + 0.6 * target + rng.normal(0, 0.02, 4000)  # same ranking, pulled toward the mean
    x, y = nt.quantile_map(scores, target)
    mapped = np.interp(scores, x, y)
    assert abs(np.mean(mapped >= 0.5) - np.mean(target >= 0.5)) < 0.01
    assert np.mean(scores >= 0.5) < np.mean(target >= 0.5) - 0.05  # before the map it flagged too few


def test_scorer_loads_scores_and_looks_up_held_out_scores(trained):
    root, tmp, info = trained
    s = RTPNgram(cache_dir=tmp / "cache", head_file=tmp / "head.safetensors")
    assert s.version.startswith("rtp-ngram-2+") and s.version.endswith(info["sha256"][:12])
    x = s.score(["a lovely garden indeed", "you damn stupid idiot"])
    assert ((x > 0) & (x < 1)).all() and x[1] > x[0]
    ts = nt.training_set(root)
    held = s.held_out_scores(ts.texts[:5])
    assert held is not None and held.shape == (5,)
    assert s.held_out_scores(["never seen before"]) is None


def test_a_head_from_other_features_is_refused(trained, tmp_path):
    root, tmp, info = trained
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(Exception):
        RTPNgram(head_file=tmp_path / "bad.safetensors")
    with pytest.raises(UsageError, match="missing"):
        RTPNgram(head_file=tmp_path / "absent.safetensors")


def test_idf_and_tfidf_match_sklearn():
    from sklearn.feature_extraction.text import TfidfTransformer

    from toxbench.harness.measure.scorers.ngram_stack import Ngrams, fit_idf, tfidf

    counts = Ngrams()(["the cat sat", "the dog", "a cat and a dog and a bird"])
    ref = TfidfTransformer(sublinear_tf=True).fit(counts)
    assert np.allclose(fit_idf(counts), ref.idf_)
    assert np.allclose(tfidf(counts, fit_idf(counts)).toarray(), ref.transform(counts).toarray())


def test_shipped_head_records_its_nested_cv_and_ships_its_out_of_fold_scores():
    from toxbench.harness.measure.scorers.ngram_stack import HEAD_FILE

    s = RTPNgram(head_file=HEAD_FILE)
    auc = s.head.meta["nested_cv"]
    assert auc["random/all"] >= 0.95 and auc["random/continuation"] >= 0.95  # issue 28's bar, nested grouped CV
    assert s.describe()["scale"] == "perspective" and s.head.qmap_x is not None
    ts = nt.training_set(None)
    held = s.held_out_scores(ts.texts[:50])
    assert held is not None and ((held >= 0) & (held <= 1)).all()
    x = s.score(["Thank you for the lovely afternoon.", "The weather is mild today."])
    assert (x < 0.5).all()


def test_the_head_file_stores_only_used_buckets_and_decodes_exactly(trained, tmp_path):
    root, tmp, info = trained
    head = nt.NgramHead.load(tmp / "head.safetensors")
    t = head.tensors()
    n = len(head.idf)
    used = int(np.unpackbits(t["ngram_used"].astype(np.uint8), count=n).sum())
    assert used < n // 10 and len(t["ngram_idf"]) == len(t["ngram_weight"]) == used  # a tiny corpus: few buckets
    idf, weight = nt.NgramHead.dense_arrays({k: v.astype(np.float64) for k, v in t.items()})
    assert np.array_equal(idf, head.idf) and np.array_equal(weight, head.weight)
    again = tmp_path / "again.safetensors"
    again.write_bytes(head.to_bytes())
    assert nt.NgramHead.load(again).content_sha256() == head.content_sha256() == info["sha256"]
