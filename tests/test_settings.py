"""The one KEY=VALUE parser (harness/settings.py): YAML scalars as a user means them, one-line errors."""

from __future__ import annotations

import pytest

from toxbench.harness.core.errors import UsageError
from toxbench.harness.spec.values import nest, parse_kv, parse_value


@pytest.mark.parametrize("raw, value", [
    ("50", 50), ("-3", -3), ("0.5", 0.5), ("1e-4", 1e-4), ("2.5E3", 2500.0), ("true", True), ("False", False),
    ("null", None), ("None", None), ("", None), ("[1, 2]", [1, 2]), ("[a, no]", ["a", "no"]), ("{a: 1}", {"a": 1}),
    ('"50"', "50"), ("mean", "mean"), ("no", "no"), ("yes", "yes"), ("010", "010"), ("1:30", "1:30"),
    ("Be nice: no swearing", "Be nice: no swearing"), ("a # b", "a # b"), ("[unclosed", "[unclosed"),
    ("model.layers.*.mlp", "model.layers.*.mlp"),
])
def test_values(raw, value):
    assert parse_value(raw) == value and type(parse_value(raw)) is type(value)


def test_pairs_sorted_last_wins_and_nested():
    assert parse_kv(["k=50", "aura.pooling=mean", "k=3"]) == (("aura.pooling", "mean"), ("k", 3))
    assert parse_kv(["text=a=b"]) == (("text", "a=b"),)
    assert nest(parse_kv(["generation.k=4", "limit=20"])) == {"generation": {"k": 4}, "limit": 20}


@pytest.mark.parametrize("item", ["limit", "=5"])
def test_malformed_item_is_one_line_naming_it(item):
    with pytest.raises(UsageError) as e:
        parse_kv([item], "--set", "limit=20")
    assert str(e.value) == f"--set {item!r} is not KEY=VALUE (e.g. limit=20)"


def test_split_commas_reads_lists_one_way():
    from toxbench.harness.spec.values import split_commas

    assert split_commas("a, b,,c ") == ["a", "b", "c"]
    assert split_commas(("a,b", "c")) == ["a", "b", "c"]  # a repeated option
    assert split_commas(None) == [] and split_commas("") == [] and split_commas(" , ") == []
