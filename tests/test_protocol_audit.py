"""Issue 27.1: everything that changes a number is in the task protocol; runs differing in any of it never share
a column, and --strict refuses them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from toxbench.harness.core.errors import UsageError
from toxbench.harness.report.leaderboard import build_leaderboard
from toxbench.harness.run.evaluate import PROTOCOL_FIELDS
from toxbench.harness.run.runner import execute
from toxbench.harness.spec.runspec import RunSpec


def _run(model_dir, out, intervention, max_length):
    spec = RunSpec(model=str(model_dir), intervention=intervention, tasks=("wikitext",), limit=2,
                   max_length=max_length, batch_size=4, output_dir=str(out), device="cpu")
    return execute(spec, progress=False)


def test_window_is_in_the_perplexity_protocol_and_splits_tables(tiny_llama_dir, tmp_path, cache_dir):
    none = _run(tiny_llama_dir, tmp_path, "none", 32)
    other = _run(tiny_llama_dir, tmp_path, "preprompt", 64)
    proto = json.loads((none / "results.json").read_text())["tasks"]["wikitext"]["protocol"]
    assert proto["max_length"] == 32 and proto["rolling_context_len"] == 1
    for key in PROTOCOL_FIELDS["loglikelihood_rolling"]:
        assert key in proto, key
    lb = build_leaderboard([none, other], warn=False)
    tables = [tb for _, _, tbs in lb.rendered() for tb in tbs]
    assert tables and all(len(set(tb.display["intervention"])) == 1 for tb in tables)  # never one column
    assert "window 32" in lb.markdown() and "window 64" in lb.markdown()
    with pytest.raises(UsageError) as e:
        build_leaderboard([none, other], strict=True, warn=False)
    assert "max_length" in str(e.value) or "window" in str(e.value)


@pytest.mark.parametrize("kind,field", [(k, f) for k, fs in PROTOCOL_FIELDS.items() for f in fs])
def test_every_audited_field_splits_a_column(tmp_path, kind, field):
    """A copy of a run whose protocol differs in one audited field lands in another table."""
    fixture = Path(__file__).parent / "fixtures" / "runs" / "paper"
    a, b = (tmp_path / name for name in ("smollm2-135m__none__0a1b2c3d4e", "smollm2-135m__aura__1b2c3d4e5f"))
    shutil.copytree(fixture / a.name, a)
    shutil.copytree(fixture / b.name, b)
    res = json.loads((b / "results.json").read_text())
    for task in res["tasks"].values():
        task["protocol"][field] = {"changed": field}
    if field == "seed":  # the run's seed is every task's seed
        res["protocol"]["seed"] = 99
    (b / "results.json").write_text(json.dumps(res))
    lb = build_leaderboard([a, b], warn=False)
    for _, _, tbs in lb.rendered():
        for tb in tbs:
            assert len(set(tb.display["intervention"])) == 1, (kind, field)
    with pytest.raises(UsageError):
        build_leaderboard([a, b], strict=True, warn=False)


def test_the_readme_audit_table_matches_the_code():
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = readme.split("**What is in a task's protocol**")[1].split("\n\n")[1]
    rows: dict[str, str] = {}
    for first, rest in re.findall(r"^\| ([^|]+) \| (.+) \|$", table, re.M):
        for kind in re.findall(r"`(\w+)`", first) or first.split()[:1]:
            rows[kind] = rest
    common = set(re.findall(r"`(\w+)`", rows["every"]))
    for kind, fields in PROTOCOL_FIELDS.items():
        listed = common | set(re.findall(r"`(\w+)`", rows[kind])) | {"seed"}
        assert set(fields) <= listed, (kind, set(fields) - listed)
