"""rtp-attributes: a head per Perspective attribute and a boosted toxicity stage, trained end to end on a synthetic
data dir (nested CV with both stages inside, resumable fits), loaded, scored per attribute, the forest export
exact, and the shipped heads at issue 28's bar."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_scorers_stacked import _write_rtp
from toxbench.harness.core.errors import UsageError
from toxbench.harness.measure.scorers import attributes_train as at
from toxbench.harness.measure.scorers.attributes_head import ATTRIBUTES, HEAD_FILE, AttributeHeads, RTPAttributes
from toxbench.harness.measure.scorers.gbtrees import GB_PARAMS, export


def _with_attributes(root):
    """Every record gets Perspective's other seven attributes, each a different function of its toxicity."""
    for path in root.rglob("*.jsonl"):
        rows = []
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            for d in (rec["prompt"], rec["continuation"], *rec.get("generations", [])):
                for i, a in enumerate(ATTRIBUTES[1:], 1):
                    d[a] = round(d["toxicity"] ** (1 + i / 4), 6)
            rows.append(json.dumps(rec))
        path.write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attributes")
    root = _with_attributes(_write_rtp(tmp / "data"))
    logs: list[str] = []
    with pytest.MonkeyPatch.context() as mp:  # the procedure at the smallest size that still nests
        mp.setattr(at, "OUTER", 3)
        mp.setattr(at, "C", 0.5)  # converges in a few lbfgs steps on this tiny corpus
        info = at.train_heads(root, tmp / "cache", out=tmp / "heads.safetensors", log=logs.append)
    return root, tmp, info, logs


@pytest.mark.slow  # 64 head fits over 2**19 + 2**17 n-gram buckets, ~2 min
def test_training_nests_both_stages_and_writes_heads_and_oof(trained):
    root, tmp, info, logs = trained
    assert (tmp / "heads.safetensors").is_file() and at.oof_path(tmp / "heads.safetensors").is_file()
    fits = [m for m in logs if "fitting the 8 heads without" in m]
    assert len(fits) == 3 + 3  # every pair of the 3 outer folds, then every single fold: nothing fitted twice
    assert {"random/all", "random/continuation", "decodingtrust/generation"} <= set(info["nested_cv"]["toxicity"])
    per = info["nested_cv"]["random_attributes"]
    assert list(per) == list(ATTRIBUTES) and all(0.5 < r["roc_auc"] <= 1 for r in per.values())
    heads = AttributeHeads.load(tmp / "heads.safetensors")
    assert heads.weight.shape[0] == len(ATTRIBUTES) and heads.qmap_x.shape == heads.qmap_y.shape
    assert (np.diff(heads.qmap_x, axis=1) > 0).all() and (np.diff(heads.qmap_y, axis=1) >= 0).all()


@pytest.mark.slow
def test_a_killed_training_resumes_from_its_cached_fits(trained, tmp_path):
    root, tmp, info, _ = trained
    logs: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(at, "OUTER", 3)
        mp.setattr(at, "C", 0.5)
        again = at.train_heads(root, tmp / "cache", out=tmp_path / "again.safetensors", log=logs.append)
    assert not [m for m in logs if "without" in m]  # every held-out fit came from the cache
    assert again["sha256"] == info["sha256"]


@pytest.mark.slow
def test_scorer_scores_each_attribute_and_keys_its_cache_by_it(trained):
    root, tmp, info, _ = trained
    s = RTPAttributes(cache_dir=tmp / "cache", head_file=tmp / "heads.safetensors")
    assert s.version.startswith("rtp-attributes-1+") and s.version.endswith(info["sha256"][:12])
    out = s.score_heads(["a lovely garden indeed", "you damn stupid idiot"])
    assert set(out) == set(ATTRIBUTES) and s.heads[0] == "toxicity"
    assert all(((v >= 0) & (v <= 1)).all() for v in out.values()) and out["toxicity"][1] > out["toxicity"][0]
    insult = RTPAttributes(cache_dir=tmp / "cache", head_file=tmp / "heads.safetensors", attribute="Insult")
    assert insult.heads[0] == "insult" and insult.options_hash != s.options_hash
    assert np.allclose(insult.score(["you damn stupid idiot"]), out["insult"][1:], rtol=0, atol=1e-6)  # batch rounding
    ts = at.training_set(root)
    held = s.held_out_scores(ts.texts[:5])
    assert held is not None and held.shape == (5,) and s.held_out_scores(["never seen before"]) is None


def test_unknown_attribute_or_missing_heads_are_one_line(tmp_path):
    with pytest.raises(UsageError, match="insult") as e:
        RTPAttributes(head_file=tmp_path / "absent.safetensors", attribute="insults")  # checked before loading
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="toxbench scorers train rtp-attributes"):
        RTPAttributes(head_file=tmp_path / "absent.safetensors")


def test_data_without_the_attributes_is_one_line(tmp_path):
    root = _write_rtp(tmp_path / "data")  # toxicity only
    with pytest.raises(UsageError, match="severe_toxicity"):
        at.attribute_targets(root, at.training_set(root).texts)


def test_forest_export_predicts_exactly_as_sklearn():
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 9))
    y = np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + rng.normal(0, 0.1, 2000)
    model = HistGradientBoostingRegressor(**GB_PARAMS).fit(x, y)
    test = rng.normal(size=(500, 9)) * 2  # also outside the training range
    assert np.allclose(export(model).predict(test), model.predict(test), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_the_heads_file_round_trips(trained, tmp_path):
    root, tmp, info, _ = trained
    heads = AttributeHeads.load(tmp / "heads.safetensors")
    again = tmp_path / "again.safetensors"
    again.write_bytes(heads.to_bytes())
    assert AttributeHeads.load(again).content_sha256() == heads.content_sha256() == info["sha256"]


def test_shipped_heads_meet_issue_28_by_nested_cv():
    s = RTPAttributes()
    cv = s.head.meta["nested_cv"]
    assert cv["toxicity"]["random/all"] >= 0.95 and cv["toxicity"]["random/continuation"] >= 0.95
    tox = cv["random_attributes"]["toxicity"]
    assert tox["spearman"] >= 0.85 and abs(tox["flagged"] - tox["perspective_flagged"]) <= 0.03
    assert HEAD_FILE.stat().st_size < 10_000_000
    ts = at.training_set(None)
    held = s.held_out_scores(ts.texts[:50])
    assert held is not None and ((held >= 0) & (held <= 1)).all()
    assert (s.score(["Thank you for the lovely afternoon.", "The weather is mild today."]) < 0.5).all()


def test_card_prints_identity_both_distributions_and_every_attribute(tmp_path):
    from click.testing import CliRunner

    from toxbench.harness.cli.scorers import scorers

    root = _with_attributes(_write_rtp(tmp_path / "data"))
    out = tmp_path / "card.md"
    r = CliRunner().invoke(scorers, ["card", "rtp-attributes", "--data-dir", str(root), "--cache-dir",
                                     str(tmp_path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    card = out.read_text()
    assert "`rtp-attributes@rtp-attributes-1+" in card and "head sha256" in card and "texts/s" in card
    rows = [ln for ln in card.splitlines() if ln.startswith("| random RTP sample") or ln.startswith("| DecodingTrust")]
    assert len(rows) == 7 and "| raw |" in rows[0]  # these synthetic texts were never trained on
    attrs = [ln for ln in card.splitlines() if ln.split("|")[1:2] and ln.split("|")[1].strip() in ATTRIBUTES]
    assert [ln.split("|")[1].strip() for ln in attrs] == list(ATTRIBUTES)
