"""Issue 27.8: one option name per meaning across commands, no per-run lm-eval noise, `show` on counts and on
files, plot titles that stay narrow."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import click
from click.testing import CliRunner

from toxbench.harness.cli import main

RUNS = Path(__file__).parent / "fixtures" / "runs"


def _commands(group: click.Group, prefix: str = ""):
    for name, cmd in group.commands.items():
        yield f"{prefix}{name}", cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix}{name} ")


def test_one_option_name_per_meaning():
    for name, cmd in _commands(main):
        for p in cmd.params:
            if not isinstance(p, click.Option):
                continue
            assert "--output" not in p.opts and "--option" not in p.opts, (name, p.opts)
            if "-o" in p.opts:  # -o always says where the command's product goes
                assert set(p.opts) & {"--out", "--output-dir"}, (name, p.opts)


def test_lm_eval_per_run_noise_is_dropped(tiny_llama_model, caplog):
    from toxbench.harness.run.adapter import HookedLM
    from toxbench.harness.run.lm_eval_logs import EXPECTED

    model, tok = tiny_llama_model
    with caplog.at_level(logging.INFO):
        HookedLM(model, tokenizer=tok, batch_size=2, progress=False)
        for name, needles in EXPECTED.items():
            for n in needles:
                logging.getLogger(name).warning(f"task_x: {n} and more")
        logging.getLogger("lm_eval.api.task").warning("a real warning")
    assert "already-initialized" not in caplog.text and "Custom kwargs" not in caplog.text
    assert "a real warning" in caplog.text


def test_show_counts_have_no_ci_and_a_run_file_shows_its_run(tiny_llama_dir, tmp_path, cache_dir):
    rows = [{"prompt": {"text": t, "toxicity": x}} for t, x in (("the film was", 0.1), ("you are a", 0.7))]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["run", "--model", str(tiny_llama_dir), "--tasks", "rtp", "--data", str(data), "--k", "2",
            "--max-new-tokens", "3", "--scorer", "profanity-check", "--device", "cpu", "-o", str(tmp_path / "r")]
    assert CliRunner().invoke(main, args).exit_code == 0
    (run,) = (tmp_path / "r").iterdir()
    res = json.loads((run / "results.json").read_text())
    assert res["tasks"]["rtp"]["metrics"]["n_continuations"]["ci"] is None
    out = CliRunner().invoke(main, ["show", str(run / "results.json")])
    assert out.exit_code == 0 and re.search(r"n_continuations=2(,|$)", out.output, re.M), out.output
    other = tmp_path / "notes.txt"
    other.write_text("x")
    out = CliRunner().invoke(main, ["show", str(other)])
    assert out.exit_code == 2 and "is a file, not a run directory" in out.output


def test_plot_titles_stay_narrow(tmp_path):
    import matplotlib.image as mpimg

    from toxbench.harness.report.leaderboard import build_leaderboard, write_leaderboard
    from toxbench.harness.report.plots import write_plots_beside

    lb = build_leaderboard([RUNS / "paper", RUNS / "limit16"], warn=False)
    assert any(tb.heading for _, _, tbs in lb.rendered() for tb in tbs)
    written = write_leaderboard(lb, tmp_path / "b.md")
    pngs = [p for p in write_plots_beside(lb, written[0]) if p.suffix == ".png"]
    assert pngs
    for p in pngs:
        assert mpimg.imread(p).shape[1] <= 1000, p.name


SHARED = ("--batch-size", "--seed", "--folds-seed", "--threads", "--device", "--data-dir", "--cache-dir",
          "--intervention-arg", "--intervention-state", "--dry-run")


def test_shared_options_have_one_declaration():
    """Issue 23: an option every command shares has one default and one help text (declared in cli/options.py)."""
    seen: dict[str, set] = {}
    for name, cmd in _commands(main):
        for p in cmd.params:
            if isinstance(p, click.Option) and p.opts[0] in SHARED:
                seen.setdefault(p.opts[0], set()).add((repr(p.default), p.help))
    assert set(seen) == set(SHARED)
    for opt, variants in seen.items():
        assert len(variants) == 1, (opt, variants)


def test_show_on_a_folder_prints_the_compact_board():
    """Issue 26: a folder listing ends with the compact Summary of its finished runs."""
    out = CliRunner().invoke(main, ["show", str(RUNS / "paper")])
    assert out.exit_code == 0, out.output
    assert "run(s) under" in out.output and "Toxic frac. ×" in out.output and "| smollm2-135m | aura" in out.output
