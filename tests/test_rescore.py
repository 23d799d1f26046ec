"""`toxbench rescore`: another scorer on a finished run's continuations, with no continuation sampled again."""

from __future__ import annotations

import json
import pytest

from click.testing import CliRunner

from toxbench.harness.run import generation
from toxbench.harness.cli import main


def _run(tiny_llama_dir, tmp_path, scorer):
    rows = [{"prompt": {"text": t, "toxicity": x}} for t, x in
            (("the film was", 0.1), ("you are a", 0.7), ("the city river", 0.2))]
    data = tmp_path / "my_rtp.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["run", "--model", str(tiny_llama_dir), "--tasks", "rtp", "--data", str(data), "--k", "3",
            "--max-new-tokens", "4", "--scorer", scorer, "--device", "cpu", "-o", str(tmp_path / "runs")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output


def _results(run_dir):
    return json.loads((run_dir / "results.json").read_text())


def test_rescore_scores_the_same_continuations_without_sampling(tiny_llama_dir, tmp_path, cache_dir, monkeypatch):
    _run(tiny_llama_dir, tmp_path, "profanity-check")
    (source,) = list((tmp_path / "runs").iterdir())
    calls = []
    orig = generation._BatchRunner.run
    monkeypatch.setattr(generation._BatchRunner, "run", lambda self, *a, **k: calls.append(1) or orig(self, *a, **k))
    res = CliRunner().invoke(main, ["rescore", str(source), "--scorer", "jigsaw-bilstm", "--quiet"])
    assert res.exit_code == 0, res.output
    assert calls == []  # every continuation came from the copied cache
    (target,) = [d for d in (tmp_path / "runs").iterdir() if d != source]
    a, b = _results(source), _results(target)
    assert b["completed"] and b["spec"]["scorer"] == "jigsaw-bilstm" and a["spec"]["scorer"] == "profanity-check"
    assert {k: v for k, v in b["spec"].items() if k != "scorer"} == {k: v for k, v in a["spec"].items()
                                                                     if k != "scorer"}
    conts = [[json.loads(x)["filtered_resps"] for x in (d / "samples_rtp.jsonl").read_text().splitlines()]
             for d in (source, target)]
    assert conts[0] == conts[1]
    assert b["tasks"]["rtp"]["protocol"]["scorer"] != a["tasks"]["rtp"]["protocol"]["scorer"]
    # the same again: complete, nothing recomputed, no third run dir
    res = CliRunner().invoke(main, ["rescore", str(source), "--scorer", "jigsaw-bilstm", "--quiet"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "runs").iterdir())) == 2 and calls == []


def test_rescore_bad_input_is_one_line_and_leaves_no_run_dir(tiny_llama_dir, tmp_path, cache_dir):
    _run(tiny_llama_dir, tmp_path, "profanity-check")
    (source,) = list((tmp_path / "runs").iterdir())
    for args, needle in (
        (["--scorer", "jigsaw-bilsm"], "Did you mean 'jigsaw-bilstm'"),
        (["--scorer", "profanity-check"], "already scored by 'profanity-check'"),
    ):
        res = CliRunner().invoke(main, ["rescore", str(source), *args])
        assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["rescore", str(tmp_path), "--scorer", "jigsaw-bilstm"])
    assert res.exit_code == 2 and "not a toxbench run directory" in res.output
    assert list((tmp_path / "runs").iterdir()) == [source]


def test_rescore_help():
    res = CliRunner().invoke(main, ["rescore", "--help"])
    assert res.exit_code == 0 and "--scorer" in res.output and "RUN_DIR" in res.output


def test_rescore_copies_tasks_without_continuations(tiny_llama_dir, tmp_path, cache_dir, monkeypatch):
    """Issue 27.6: perplexity is not recomputed by a rescore (no forward pass), and its numbers are the source's."""
    from toxbench.harness.run.adapter import HookedLM

    rows = [{"prompt": {"text": t, "toxicity": x}} for t, x in (("the film was", 0.1), ("you are a", 0.7))]
    data = tmp_path / "my_rtp.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["run", "--model", str(tiny_llama_dir), "--tasks", "rtp,wikitext", "--data", str(data), "--k", "2",
            "--max-new-tokens", "3", "--limit", "2", "--max-length", "32", "--scorer", "profanity-check",
            "--device", "cpu", "-o", str(tmp_path / "runs")]
    assert CliRunner().invoke(main, args).exit_code == 0
    (source,) = list((tmp_path / "runs").iterdir())
    calls = []
    monkeypatch.setattr(HookedLM, "loglikelihood_rolling", lambda self, *a, **k: calls.append(1) or [])
    res = CliRunner().invoke(main, ["rescore", str(source), "--scorer", "jigsaw-bilstm", "--quiet"])
    assert res.exit_code == 0, res.output
    assert calls == []
    (target,) = [d for d in (tmp_path / "runs").iterdir() if d != source]
    a, b = _results(source), _results(target)
    assert b["completed"] and b["tasks"]["wikitext"]["metrics"] == a["tasks"]["wikitext"]["metrics"]
    assert (target / "samples_wikitext.jsonl").read_text() == (source / "samples_wikitext.jsonl").read_text()
    assert b["tasks"]["rtp"]["protocol"]["scorer"]["name"] == "jigsaw-bilstm"


def test_rescore_copies_a_perplexity_only_run_whole(tiny_llama_dir, tmp_path, cache_dir, monkeypatch):
    """A sweep's cost runs (perplexity only) follow its toxicity runs to another scorer without a forward pass."""
    from toxbench.harness.run.adapter import HookedLM

    args = ["run", "--model", str(tiny_llama_dir), "--tasks", "wikitext", "--limit", "2", "--max-length", "32",
            "--device", "cpu", "-o", str(tmp_path / "runs")]
    assert CliRunner().invoke(main, args).exit_code == 0
    (source,) = list((tmp_path / "runs").iterdir())
    monkeypatch.setattr(HookedLM, "loglikelihood_rolling", lambda self, *a, **k: pytest.fail("recomputed"))
    res = CliRunner().invoke(main, ["rescore", str(source), "--scorer", "jigsaw-bilstm", "--quiet"])
    assert res.exit_code == 0, res.output
    (target,) = [d for d in (tmp_path / "runs").iterdir() if d != source]
    a, b = _results(source), _results(target)
    assert b["completed"] and b["tasks"]["wikitext"]["metrics"] == a["tasks"]["wikitext"]["metrics"]


def test_rescore_with_the_same_scorer_refreshes_a_run_scored_by_another_version(tiny_llama_dir, tmp_path, cache_dir,
                                                                                  monkeypatch):
    """A retrained or re-encoded head is another scorer version: the run is scored again in place from its
    generations (same run id, nothing sampled), so its protocol names the installed scorer."""
    _run(tiny_llama_dir, tmp_path, "profanity-check")
    (source,) = list((tmp_path / "runs").iterdir())
    before = _results(source)
    current = before["tasks"]["rtp"]["protocol"]["scorer"]["version"]
    stale = json.loads((source / "results.json").read_text())
    stale["tasks"]["rtp"]["protocol"]["scorer"]["version"] = current + "-old"
    (source / "results.json").write_text(json.dumps(stale))
    calls = []
    orig = generation._BatchRunner.run
    monkeypatch.setattr(generation._BatchRunner, "run", lambda self, *a, **k: calls.append(1) or orig(self, *a, **k))
    res = CliRunner().invoke(main, ["rescore", str(source), "--scorer", "profanity-check", "--quiet"])
    assert res.exit_code == 0, res.output
    assert calls == [] and list((tmp_path / "runs").iterdir()) == [source]
    after = _results(source)
    assert after["completed"] and after["tasks"]["rtp"]["protocol"]["scorer"]["version"] == current
    assert after["tasks"]["rtp"]["metrics"] == before["tasks"]["rtp"]["metrics"]
    res = CliRunner().invoke(main, ["rescore", str(source), "--scorer", "profanity-check", "--quiet"])
    assert res.exit_code == 2 and "already scored" in res.output
