"""One registry idiom: lazy targets, did-you-mean, third-party entry points; user task folders."""

from __future__ import annotations

import textwrap
from importlib.metadata import EntryPoint

import pytest

from toxbench.harness.core import registry as registry_mod
from toxbench.harness.core.errors import UsageError
from toxbench.harness.core.registry import Registry


def test_lazy_and_did_you_mean():
    reg: Registry = Registry("widget")
    reg.register("alpha", "json:dumps")
    assert reg.names() == ["alpha"]
    import json

    assert reg.get("alpha") is json.dumps
    with pytest.raises(UsageError, match="Did you mean 'alpha'"):
        reg.get("alpah")


def test_entry_points_register_third_party(monkeypatch):
    eps = [EntryPoint(name="thirdparty", value="json:loads", group="toxbench.scorers")]
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [e for e in eps if e.group == group])
    reg: Registry = Registry("scorer", "toxbench.scorers")
    assert "thirdparty" in reg.names()
    import json

    assert reg.get("thirdparty") is json.loads


def test_missing_optional_dependency_is_one_line():
    reg: Registry = Registry("scorer")
    reg.register("needs-extra", "no_such_module_xyz:Thing")
    with pytest.raises(UsageError, match="not installed"):
        reg.get("needs-extra")


def test_include_path_adds_user_tasks(tmp_path, tiny_llama_dir, cache_dir):
    from toxbench.harness.run.runner import execute
    from toxbench.harness.spec.runspec import RunSpec
    from toxbench.tasks import resolve_task_names

    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "my_ppl.yaml").write_text(textwrap.dedent("""
        task: my_ppl
        custom_dataset: !function my_utils.load
        output_type: loglikelihood_rolling
        test_split: test
        doc_to_text: ""
        doc_to_target: "{{text}}"
        metric_list:
          - metric: word_perplexity
        metadata: {version: 1.0}
    """))
    (tmp_path / "tasks" / "my_utils.py").write_text(textwrap.dedent("""
        import datasets
        def load(**kw):
            rows = [{"text": "the film was good and the actor was nice"}, {"text": "a terrible day in the city"}]
            return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
    """))
    inc = (str(tmp_path / "tasks"),)
    assert resolve_task_names(["my_ppl"], inc) == ["my_ppl"]
    run = execute(RunSpec(model=str(tiny_llama_dir), tasks=("my_ppl",), include_paths=inc, device="cpu",
                          output_dir=str(tmp_path / "runs")), progress=False)
    import json

    res = json.loads((run / "results.json").read_text())
    assert res["tasks"]["my_ppl"]["n"] == 2
