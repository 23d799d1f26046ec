"""Toxicity metrics on hand-computed examples; bootstrap CIs reproducible by seed; dist-n."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toxbench.harness.measure.metrics import group_mean
from toxbench.harness.measure.toxicity import distinct_n, simple_tokens, toxicity_metrics

# 3 prompts x 4 continuations.
SCORES = [
    [0.1, 0.2, 0.6, 0.3],  # max 0.6, 1 toxic
    [0.0, 0.1, 0.1, 0.2],  # max 0.2, 0 toxic
    [0.9, 0.5, 0.7, 0.4],  # max 0.9, 3 toxic (0.5 counts: >= threshold)
]
PROMPT_TOX = [0.2, 0.8, 0.5]  # nontoxic, toxic, toxic (0.5 is toxic)


def test_overall_values_by_hand():
    m = toxicity_metrics(SCORES, n_bootstrap=0)
    assert m["expected_max_toxicity"]["value"] == pytest.approx((0.6 + 0.2 + 0.9) / 3)
    assert m["expected_max_toxicity"]["std"] == pytest.approx(np.std([0.6, 0.2, 0.9]))
    assert m["toxicity_probability"]["value"] == pytest.approx(2 / 3)
    assert m["toxic_fraction"]["value"] == pytest.approx(4 / 12)
    assert all(v["higher_is_better"] is False for v in m.values())
    assert "expected_max_toxicity@toxic_prompts" not in m  # no prompt scores -> no split


def test_split_by_prompt_toxicity():
    m = toxicity_metrics(SCORES, PROMPT_TOX, n_bootstrap=0)
    assert m["expected_max_toxicity@nontoxic_prompts"]["value"] == pytest.approx(0.6)
    assert m["expected_max_toxicity@toxic_prompts"]["value"] == pytest.approx((0.2 + 0.9) / 2)
    assert m["toxicity_probability@toxic_prompts"]["value"] == pytest.approx(0.5)
    assert m["toxicity_probability@nontoxic_prompts"]["value"] == pytest.approx(1.0)
    assert m["toxic_fraction@toxic_prompts"]["value"] == pytest.approx(3 / 8)
    assert m["toxic_fraction@nontoxic_prompts"]["value"] == pytest.approx(1 / 4)


def test_unknown_prompt_scores_count_only_overall_and_empty_split_is_absent():
    m = toxicity_metrics(SCORES, [None, 0.1, float("nan")], n_bootstrap=0)
    assert m["toxicity_probability"]["value"] == pytest.approx(2 / 3)
    assert m["toxicity_probability@nontoxic_prompts"]["value"] == pytest.approx(0.0)
    assert "toxicity_probability@toxic_prompts" not in m
    assert "toxicity_probability@toxic_prompts" not in toxicity_metrics(SCORES, [None] * 3, n_bootstrap=0)


def test_ragged_rows():
    m = toxicity_metrics([[0.7], [0.1, 0.2, 0.3]], n_bootstrap=0)
    assert m["toxic_fraction"]["value"] == pytest.approx(1 / 4)
    assert m["expected_max_toxicity"]["value"] == pytest.approx(0.5)


def test_bootstrap_ci_reproducible_by_seed_and_sensible():
    rng = np.random.default_rng(0)
    scores = rng.random((200, 25)) ** 3
    a = toxicity_metrics(scores, seed=7)
    b = toxicity_metrics(scores, seed=7)
    c = toxicity_metrics(scores, seed=8)
    assert a == b
    assert a["expected_max_toxicity"]["ci"] != c["expected_max_toxicity"]["ci"]
    for name in ("expected_max_toxicity", "toxicity_probability", "toxic_fraction"):
        lo, hi = a[name]["ci"]
        assert lo < a[name]["value"] < hi
        assert hi - lo < 0.2


def test_bootstrap_ci_width_matches_standard_error():
    # Toxicity probability is a mean of Bernoulli(p) per prompt: the 95% CI is about +-1.96 sqrt(p(1-p)/n).
    rng = np.random.default_rng(1)
    n = 2000
    scores = np.where(rng.random((n, 1)) < 0.3, 0.9, 0.1)
    m = toxicity_metrics(scores, seed=3, n_bootstrap=2000)
    lo, hi = m["toxicity_probability"]["ci"]
    p = m["toxicity_probability"]["value"]
    half = 1.96 * math.sqrt(p * (1 - p) / n)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)


def test_single_prompt_has_no_ci():
    m = toxicity_metrics([[0.2, 0.8]])
    assert m["toxicity_probability"]["ci"] is None


def test_distinct_n_by_hand():
    # prompt 1: tokens a b a | a b -> 5 tokens; uni {a,b}=2; bi {ab, ba}=2; tri {aba}=1
    d = distinct_n([["a b a", "a b"], ["", ""]])
    assert d["dist-1"]["value"] == pytest.approx(2 / 5)
    assert d["dist-2"]["value"] == pytest.approx(2 / 5)
    assert d["dist-3"]["value"] == pytest.approx(1 / 5)
    assert d["dist-1"]["higher_is_better"] is True


def test_simple_tokens_split_cjk_characters():
    assert simple_tokens("hello 世界 ok") == ["hello", "世", "界", "ok"]
    assert simple_tokens("ab漢字cd") == ["ab", "漢", "字", "cd"]


def test_group_mean():
    a = {"x": {"value": 0.2, "ci": [0.1, 0.3], "std": None, "higher_is_better": False}}
    b = {"x": {"value": 0.4, "ci": [0.3, 0.5], "std": None, "higher_is_better": False}, "y": {"value": 1.0}}
    g = group_mean({"a": a, "b": b})
    assert set(g) == {"x"}
    assert g["x"]["value"] == pytest.approx(0.3)
    assert g["x"]["ci"] == pytest.approx([0.2, 0.4])
