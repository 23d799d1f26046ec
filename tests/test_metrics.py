"""harness/metrics.py: ratio statistics, the one bootstrap, paired CIs, per-document statistics, group means."""

from __future__ import annotations

import math

import numpy as np
import pytest
from toxbench.harness.measure.metrics import (
    RatioStat,
    aggregation_stat,
    bootstrap_ci,
    group_mean,
    paired_ci,
    sample_stats,
    toxicity_stats,
)
from toxbench.harness.measure.schema import task_kind


def test_ratio_stats_equal_lm_eval_aggregations():
    from lm_eval.api.metrics import bits_per_byte, mean, weighted_perplexity

    pairs = [(-120.5, 30), (-80.0, 25), (-300.25, 61)]
    assert aggregation_stat(weighted_perplexity, pairs).value() == pytest.approx(weighted_perplexity(pairs))
    assert aggregation_stat(bits_per_byte, pairs).value() == pytest.approx(bits_per_byte(pairs))
    assert aggregation_stat(mean, [0.0, 1.0, 1.0]).value() == pytest.approx(2 / 3)
    assert aggregation_stat(lambda xs: 0.0, [1.0]) is None  # unknown aggregation: no ratio form


def test_bootstrap_is_seeded_and_brackets_the_value():
    rng = np.random.default_rng(0)
    stat = RatioStat.mean(rng.random(200))
    a, b = bootstrap_ci(stat, 7), bootstrap_ci(stat, 7)
    assert a == b and a[0] < stat.value() < a[1]
    assert bootstrap_ci(stat, 8) != a


def _paired_scores(n: int, effect: float, seed: int = 0) -> tuple[RatioStat, RatioStat]:
    """Prompts of very different difficulty (a wide spread between prompts) and a variant that lowers each
    prompt's value by ``effect`` with a little noise: the setting where pairing matters."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.05, 0.9, n)
    other = np.clip(base * (1 - effect) + rng.normal(0, 0.02, n), 0, 1)
    keys = [f"p{i}" for i in range(n)]
    return RatioStat.mean(base, keys), RatioStat.mean(other, keys)


def test_paired_ci_detects_a_consistent_effect_that_unpaired_cis_cannot():
    ref, var = _paired_scores(40, 0.15)
    p = paired_ci(ref, var, seed=1)
    assert p.ratio == pytest.approx(ref.value() / var.value())
    assert p.ratio_significant and p.delta_significant and p.delta < 0
    # the two unpaired CIs overlap: compared separately the effect would not show
    lo_ref, _ = bootstrap_ci(ref, 1)
    _, hi_var = bootstrap_ci(var, 1)
    assert hi_var > lo_ref


def test_paired_ci_of_no_change_includes_one_at_the_nominal_rate():
    ref, _ = _paired_scores(50, 0.0)
    p = paired_ci(ref, ref, seed=3)
    assert p.ratio_ci == (1.0, 1.0) and not p.ratio_significant and not p.delta_significant
    # Under no effect (both variants = prompt difficulty + independent noise) a 95% CI excludes 1x ~5% of the time.
    rng = np.random.default_rng(11)
    keys = [f"p{i}" for i in range(50)]
    hits = 0
    for rep in range(200):
        base = rng.uniform(0.2, 0.9, 50)
        a = RatioStat.mean(base + rng.normal(0, 0.05, 50), keys)
        b = RatioStat.mean(base + rng.normal(0, 0.05, 50), keys)
        hits += paired_ci(a, b, seed=rep, n_bootstrap=400).ratio_significant
    assert 2 <= hits <= 22  # 1%-11% of 200


def test_paired_ci_aligns_documents_by_key():
    ref = RatioStat.mean([0.2, 0.4, 0.6, 0.8], ["a", "b", "c", "d"])
    shuffled = RatioStat.mean([0.8, 0.2, 0.4], ["d", "a", "b"])  # another order, one document missing
    p = paired_ci(ref, shuffled, seed=0)
    assert p.n == 3 and p.ratio == pytest.approx(1.0) and p.ratio_ci == (1.0, 1.0)
    assert paired_ci(ref, RatioStat.mean([0.1], ["zz"]), seed=0) is None


def test_toxicity_stats_match_the_definitions():
    scores = [[0.1, 0.7, 0.2], [0.0, 0.1], [0.9, 0.95, 0.6, 0.4]]
    s = toxicity_stats(scores)
    assert s["expected_max_toxicity"].value() == pytest.approx((0.7 + 0.1 + 0.95) / 3)
    assert s["toxicity_probability"].value() == pytest.approx(2 / 3)
    assert s["toxic_fraction"].value() == pytest.approx(4 / 9)


def test_sample_stats_from_rtp_and_lm_eval_rows():
    rtp = [{"doc_hash": "h1", "toxicity": [0.9, 0.1], "prompt_toxicity": 0.8},
           {"doc_hash": "h2", "toxicity": [0.2, 0.3], "prompt_toxicity": 0.1}]
    st = sample_stats(rtp)
    assert st["toxic_fraction"].value() == pytest.approx(0.25)
    assert st["toxic_fraction@toxic_prompts"].value() == pytest.approx(0.5)
    assert st["expected_max_toxicity@nontoxic_prompts"].keys == ("h2",)
    ppl = [{"doc_hash": "a", "metrics": ["word_perplexity", "bits_per_byte"], "word_perplexity": [-100.0, 20],
            "bits_per_byte": [-100.0, 90]},
           {"doc_hash": "b", "metrics": ["word_perplexity", "bits_per_byte"], "word_perplexity": [-50.0, 20],
            "bits_per_byte": [-50.0, 70]}]
    st = sample_stats(ppl)
    assert st["word_perplexity"].value() == pytest.approx(math.exp(150 / 40))
    assert st["bits_per_byte"].value() == pytest.approx(150 / 160 / math.log(2))


def test_group_mean_weights_and_cis():
    a = {"x": {"value": 0.2, "ci": [0.1, 0.3], "higher_is_better": False}}
    b = {"x": {"value": 0.4, "ci": [0.3, 0.5], "higher_is_better": False}}
    g = group_mean({"a": a, "b": b}, weights={"a": 3, "b": 1}, suffix="_avg")
    assert g["x_avg"]["value"] == pytest.approx(0.25) and g["x_avg"]["n_tasks"] == 2
    assert g["x_avg"]["ci"] == pytest.approx([0.15, 0.35])


def test_task_kind_prefers_the_declared_kind():
    assert task_kind("likelihood", ["toxic_nll"]) == "likelihood"
    assert task_kind(None, ["toxic_nll"]) == "likelihood"
    assert task_kind("bogus", ["acc"]) == "zeroshot"


def test_paired_mean_ci_is_a_stratified_paired_bootstrap():
    import numpy as np
    from toxbench.harness.measure.metrics import RatioStat, paired_ci, paired_mean_ci

    rng = np.random.default_rng(1)
    a1, a2 = rng.integers(0, 2, 80).astype(float), rng.integers(0, 2, 50).astype(float)
    t1 = (RatioStat.mean(a1, [f"a{i}" for i in range(80)]), RatioStat.mean(a1, [f"a{i}" for i in range(80)]))
    flipped = a2.copy()
    flipped[:10] = 1 - flipped[:10]  # 10 of 50 answers change in the second task
    t2 = (RatioStat.mean(a2, [f"b{i}" for i in range(50)]), RatioStat.mean(flipped, [f"b{i}" for i in range(50)]))
    one = paired_mean_ci([t1], seed=3)
    assert one.delta == 0 and one.delta_ci == (0.0, 0.0)  # identical answers: no change, no width
    # one task: exactly the plain paired bootstrap (same documents, same seed)
    assert paired_mean_ci([t2], seed=3).delta_ci == paired_ci(*t2, seed=3).delta_ci
    both = paired_mean_ci([t1, t2], seed=3)
    assert abs(both.delta - (flipped.mean() - a2.mean()) / 2) < 1e-12  # the unweighted mean over tasks
    lo, hi = both.delta_ci
    assert lo <= both.delta <= hi and hi - lo < paired_ci(*t2, seed=3).delta_ci[1] - paired_ci(*t2, seed=3).delta_ci[0]
    assert paired_mean_ci([t1, (t2[0], RatioStat.mean([1.0], ["zz"]))], seed=3) is None  # a task shares no document


def test_display_schema_entries_are_complete_and_cover_every_reported_metric():
    """Issue 23: one YAML entry per metric (name, unit, direction, format, headline rank) is what every report
    reads; every metric the fixture runs report has one."""
    import json
    from pathlib import Path

    from toxbench.harness.measure import metrics, schema as M

    for name, e in M.SCHEMA.items():
        assert e["direction"] in ("lower", "higher") and isinstance(e["decimals"], int) and e.get("unit"), name
        lo, hi = M.value_range(name)
        assert lo < hi, name
    reported = set()
    for f in (Path(__file__).parent / "fixtures" / "runs").rglob("results.json"):
        res = json.loads(f.read_text())
        for part in ("tasks", "groups"):
            for t in res.get(part, {}).values():
                reported |= {m.partition("@")[0] for m in t.get("metrics", {})}
    assert reported and reported <= set(M.SCHEMA), reported - set(M.SCHEMA)
    assert M.arrow("toxic_fraction") == "↓" and M.arrow("dist-2") == "↑" and M.decimals("word_perplexity") == 2
    assert metrics.Metric.of("conditional_ppl_mean", 3.0).higher_is_better is False
