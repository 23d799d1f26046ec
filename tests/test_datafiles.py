"""Data-dir loading: missing local file -> hub fallback with its own split name; offline -> one line."""

from __future__ import annotations

import datasets
import pytest

from toxbench.harness.core.errors import UsageError
from toxbench.tasks import datafiles


def test_hub_fallback_maps_the_hub_split(monkeypatch, tmp_path):
    monkeypatch.setenv("TOXBENCH_DATA", str(tmp_path))
    seen = {}

    def fake_hub(path, name=None, split="test", **kw):
        seen.update(path=path, name=name, split=split)
        return datasets.DatasetDict({split: datasets.Dataset.from_list([{"page": "x"}])})

    monkeypatch.setattr(datafiles, "hub_dataset", fake_hub)
    dd = datafiles.local_dataset(data_file="nope/missing.raw", split="test",
                                 hub={"path": "org/set", "name": "cfg", "split": "validation"})
    assert seen == {"path": "org/set", "name": "cfg", "split": "validation"}
    assert list(dd) == ["test"] and dd["test"][0]["page"] == "x"


def test_offline_hub_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("TOXBENCH_DATA", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError) as e:
        datafiles.local_dataset(data_file="nope.jsonl", hub={"path": "org/set", "split": "test"})
    assert "\n" not in str(e.value) and "org/set" in str(e.value)


def test_missing_file_without_hub_names_it(monkeypatch, tmp_path):
    monkeypatch.setenv("TOXBENCH_DATA", str(tmp_path))
    with pytest.raises(UsageError, match="nope.jsonl"):
        datafiles.local_dataset(data_file="nope.jsonl")


def test_malformed_jsonl_names_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(UsageError, match=r"bad.jsonl:2"):
        datafiles.read_records(str(f), "jsonl")
