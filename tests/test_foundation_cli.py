"""CLI errors: one line, exit 2, no traceback — for every kind of bad input."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from toxbench.harness.cli import main


def _run(args, env=None):
    return CliRunner().invoke(main, args, env=env or {})


def _one_line_exit2(res, *needles):
    assert res.exit_code == 2, res.output
    err = res.stderr if hasattr(res, "stderr") and res.stderr else res.output
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def test_help_everywhere():
    for cmd in ([], ["run"], ["list"], ["show"], ["fit"]):
        res = _run([*cmd, "--help"])
        assert res.exit_code == 0, res.output
        assert "Usage" in res.output
    for name in main.commands:
        assert _run([name, "--help"]).exit_code == 0, name


def test_unknown_model_did_you_mean():
    _one_line_exit2(_run(["run", "--model", "smollm2"]), "'smollm2'", "smollm2-135m")


def test_unknown_task():
    _one_line_exit2(_run(["run", "--tasks", "wikitxt"]), "'wikitxt'", "Did you mean 'wikitext'")


def test_unknown_intervention():
    _one_line_exit2(_run(["run", "--intervention", "auraa"]), "'auraa'", "aura")


def test_unknown_intervention_argument():
    _one_line_exit2(_run(["run", "--intervention", "none", "-a", "k=3"]), "'k'")


def test_bad_data_dir(tmp_path):
    _one_line_exit2(_run(["run", "--data-dir", str(tmp_path / "nope")]), "data dir", "nope")


def test_offline_hub_id_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _one_line_exit2(_run(["run", "--model", "nosuch/model", "--tasks", "wikitext"], env={"HF_HUB_OFFLINE": "1"}),
                    "'nosuch/model'", "pre-download")


def test_bad_shard():
    _one_line_exit2(_run(["run", "--shard", "3/2"]), "3/2")


def test_unknown_command_did_you_mean():
    res = _run(["leaderbord"])
    assert res.exit_code == 2
    assert "leaderboard" in res.output or "Valid" in res.output


@pytest.mark.parametrize("what", ["models", "interventions", "tasks", "scorers"])
def test_list(what):
    res = _run(["list", what])
    assert res.exit_code == 0, res.output
    assert res.output.strip()


def test_list_contents():
    assert "smollm2-135m" in _run(["list", "models"]).output
    assert "aura" in _run(["list", "interventions"]).output.split()
    assert "wikitext" in _run(["list", "tasks"]).output.split()


def test_show_missing_dir(tmp_path):
    _one_line_exit2(_run(["show", str(tmp_path / "nope")]), "does not exist")


def test_every_model_running_command_takes_threads():
    """One shared --threads option (harness/options.py) on every command that runs a model or an encoder."""
    from click.testing import CliRunner

    from toxbench.harness.cli import main

    for cmd in (["run"], ["fit"], ["export"], ["pairs"], ["fluency"], ["scorers", "eval"], ["analyze", "probe"],
                ["analyze", "toxic-vectors"], ["analyze", "activations"], ["analyze", "retrieval"]):
        res = CliRunner().invoke(main, [*cmd, "--help"])
        assert res.exit_code == 0 and "--threads" in res.output, cmd
