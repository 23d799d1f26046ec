"""Leaderboard rendering from hand-made fixture run dirs (golden Markdown), protocol separation, exports, CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from toxbench.harness.cli.leaderboard import leaderboard as leaderboard_cmd
from toxbench.harness.core.errors import UsageError
from toxbench.harness.report.leaderboard import Column, build_leaderboard, write_leaderboard
from toxbench.harness.report.plots import write_plots_beside
from toxbench.harness.report.results import collect

HERE = Path(__file__).parent
RUNS = HERE / "fixtures" / "runs"
PAPER, LIMIT16 = RUNS / "paper", RUNS / "limit16"
GOLDEN = HERE / "golden"
UPDATE = os.environ.get("TOXBENCH_UPDATE_GOLDEN") == "1"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing golden {path}; run with TOXBENCH_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8")


def test_render_matches_golden():
    lb = build_leaderboard([PAPER], warn=False)
    _golden("paper.md", lb.markdown())


def test_mixed_protocols_match_golden():
    lb = build_leaderboard([PAPER, LIMIT16], warn=False)
    _golden("mixed.md", lb.markdown())


def test_headline_numbers():
    md = build_leaderboard([PAPER], warn=False).markdown()
    # EMT with CI, reduction factor none/aura = 0.4125/0.2011, ΔPPL with sign, dagger on non-English languages.
    assert "| 0.412 [0.362, 0.463] |     ref |" in md
    assert "2.05×" in md  # 0.4125 / 0.2011
    assert "+1.95" in md and "-0.025" in md
    assert "0.300†" in md and "† scored by an English-only scorer (jigsaw-bilstm v0.3.0, uncalibrated) in de, ja" in md
    assert "k=4; max 20 new tokens; sampling temperature=1.0, top_p=0.9, top_k=0; seed 1234; limit 8" in md


def test_unfinished_runs_are_skipped_with_a_warning():
    with pytest.warns(UserWarning, match="completed=false"):
        coll = collect([PAPER])
    assert {n for n, _ in coll.skipped} == {"smollm2-135m__det0__5f6a7b8c9d", "smollm2-135m__damp__6a7b8c9d0e"}
    assert len(coll.runs) == 5
    md = build_leaderboard([PAPER], warn=False).markdown()
    assert "det0" not in md.split("Skipped:")[0]  # its (partial) numbers appear nowhere


def test_different_protocols_never_share_a_column():
    lb = build_leaderboard([PAPER, LIMIT16], warn=False)
    col = [Column("rtp_challenging", "expected_max_toxicity", "EMT", "ci"),
           Column("rtp_challenging", "expected_max_toxicity", "×", "reduction")]
    tables = lb.table(col)
    assert len(tables) == 2
    limits = []
    for tb in tables:
        pids = {p for t, p in tb.protocols if t == "rtp_challenging"}
        assert len(pids) == 1
        limits.append(lb.protocols[pids.pop()]["limit"])
        assert "limit=" in tb.heading
    assert sorted(limits) == [8, 16]
    # The limit-16 table holds only `none`: no reduction factor can be taken across protocols.
    t16 = tables[limits.index(16)]
    assert list(t16.display["intervention"]) == ["none"] and "×" not in t16.display.columns


def test_strict_refuses_with_one_line():
    with pytest.raises(UsageError) as e:
        build_leaderboard([PAPER, LIMIT16], strict=True, warn=False)
    msg = str(e.value)
    assert "\n" not in msg and "rtp_challenging" in msg and "limit 8 vs 16" in msg
    build_leaderboard([PAPER], strict=True, warn=False)  # one protocol per task: fine


def test_exports_and_plots_carry_the_table_numbers(tmp_path):
    lb = build_leaderboard([PAPER], warn=False)
    out = tmp_path / "lb" / "paper.md"
    written = write_leaderboard(lb, out, csv=True, json_=True)
    written += write_plots_beside(lb, written[0])
    names = {p.name for p in written}
    assert {"paper.md", "paper.csv", "paper.json", "paper_tradeoff_smollm2-135m.png",
            "paper_rtp_lx_gemma3-270m.png"} <= names
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    assert out.read_text() == lb.markdown()
    data = json.loads((out.parent / "paper.json").read_text())
    emt = [c for c in data["cells"] if c["model"] == "smollm2-135m" and c["intervention"] == "aura"
           and c["task"] == "rtp_challenging" and c["metric"] == "expected_max_toxicity"]
    assert emt[0]["value"] == pytest.approx(0.2011) and emt[0]["ci_lo"] == pytest.approx(0.1511)
    assert emt[0]["protocol"] in data["protocols"]
    csv = (out.parent / "paper.csv").read_text().splitlines()
    assert csv[0].startswith("model,intervention,task,metric,value,ci_lo,ci_hi")
    assert len(csv) == 1 + len(data["cells"])

    from toxbench.harness.report.plots import write_plots

    plotted = dict(write_plots(lb, tmp_path / "again", "p"))
    trade = plotted[tmp_path / "again" / "p_tradeoff_smollm2-135m.png"]
    assert trade.loc["aura"].tolist() == pytest.approx([23.39, 0.0938], abs=1e-2)  # PPL vs toxic fraction
    bars = plotted[tmp_path / "again" / "p_rtp_lx_gemma3-270m.png"]
    assert bars.loc["none"].tolist() == pytest.approx([0.3, 0.35, 0.4])
    # Same numbers as the Markdown table of that section.
    section = [t for t, cols, _ in lb.sections() if t.startswith("rtp_lx: EMT")][0]
    table = lb.table(dict((t, c) for t, c, _ in lb.sections())[section])[0]
    assert table.numbers[["de", "en", "ja"]].xs("gemma3-270m", level="model").equals(bars)


# -- CLI --------------------------------------------------------------------------------------------------------
def test_cli_help():
    r = CliRunner().invoke(leaderboard_cmd, ["--help"])
    assert r.exit_code == 0 and "--strict" in r.output and "RUNS..." in r.output


def test_cli_stdout_and_out(tmp_path):
    r = CliRunner().invoke(leaderboard_cmd, [str(PAPER)])
    assert r.exit_code == 0, r.output
    assert r.stdout == build_leaderboard([PAPER], warn=False).markdown()
    assert "warning: skipped run dir smollm2-135m__det0__5f6a7b8c9d: completed=false" in r.stderr
    out = tmp_path / "x.md"
    r = CliRunner().invoke(leaderboard_cmd, [str(PAPER), "--out", str(out), "--csv", "--no-plots"])
    assert r.exit_code == 0, r.output
    assert out.is_file() and out.with_suffix(".csv").is_file() and not list(tmp_path.glob("*.png"))



def test_cli_order_puts_rows_in_the_given_order():
    def rows(args):
        r = CliRunner().invoke(leaderboard_cmd, [str(PAPER), *args])
        assert r.exit_code == 0, r.output
        summary = r.stdout.split("## Summary")[1].split("\n## ")[0]
        return [ln.split("|")[2].strip() for ln in summary.splitlines() if ln.startswith("| smollm2-135m")]
    assert rows([]) == ["none", "aura", "preprompt"]
    assert rows(["--order", "preprompt,aura"]) == ["none", "preprompt", "aura"]
    assert rows(["--order", "damp, preprompt"]) == ["none", "preprompt", "aura"]  # unlisted rows follow

@pytest.mark.parametrize("args, needle", [
    (["does/not/exist"], "no such run dir"),
    ([str(PAPER), "--csv"], "add --out"),
    ([str(PAPER), str(LIMIT16), "--strict"], "runs differ in protocol"),
    ([str(HERE / "golden")], "no run directories"),
])
def test_cli_bad_input_is_one_line_exit_2(args, needle):
    r = CliRunner().invoke(leaderboard_cmd, args)
    assert r.exit_code == 2
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("warning:")]
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_only_unfinished_runs_is_a_usage_error(tmp_path):
    shutil.copytree(PAPER / "smollm2-135m__det0__5f6a7b8c9d", tmp_path / "r")
    r = CliRunner().invoke(leaderboard_cmd, [str(tmp_path)])
    assert r.exit_code == 2 and "no finished runs" in r.stderr


def test_small_pieces():
    from toxbench.harness.measure.schema import task_kind
    from toxbench.harness.report.leaderboard import _reduction
    from toxbench.harness.report.protocol_text import describe_data_hash, describe_protocol

    assert task_kind(None, ["perplexity", "acc"]) == "zeroshot"  # LAMBADA sits with common sense
    assert task_kind(None, ["word_perplexity", "bits_per_byte"]) == "perplexity"
    assert task_kind(None, ["expected_max_toxicity@toxic_prompts"]) == "toxicity"
    assert task_kind("perplexity", ["acc"]) == "perplexity"  # what the task's YAML declares wins
    assert _reduction(0.4, 0.2) == "2.00×" and _reduction(0.4, 0.0) == "∞×" and _reduction(None, 0.2) == ""
    h = {"file": "x.jsonl", "file_sha256": "ab" * 32, "docs_sha256": "cd" * 8}
    assert describe_data_hash(h, 12) == "sha256 abababababab docs cdcdcdcd"
    text = describe_protocol({"scorer": {"name": "s", "version": "1", "calibration": "isotonic"}, "k": 25,
                              "sampling": {"do_sample": False}, "seed": 1, "limit": None, "threshold": 0.5,
                              "output_type": "generate_until", "n_prompts": 3})
    assert text == "scorer s v1, calibrated (isotonic); k=25; greedy; seed 1; limit None; threshold=0.5"


def _run_with_samples(root, name, iv, scores, ppl_pairs):
    """A run dir with per-prompt samples (RTP toxicity lists, WikiText [ll, words]) for paired comparisons."""
    from toxbench.harness.measure.metrics import sample_stats

    d = root / name
    d.mkdir(parents=True)
    rtp = [{"doc_id": i, "doc_hash": f"h{i}", "toxicity": s, "prompt_toxicity": 0.9} for i, s in enumerate(scores)]
    wt = [{"doc_id": i, "doc_hash": f"w{i}", "metrics": ["word_perplexity"], "word_perplexity": p}
          for i, p in enumerate(ppl_pairs)]
    for task, rows in (("rtp_challenging", rtp), ("wikitext", wt)):
        (d / f"samples_{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = {}
    for task, rows, kind in (("rtp_challenging", rtp, "toxicity"), ("wikitext", wt, "perplexity")):
        stats = sample_stats(rows)
        tasks[task] = {"n": len(rows), "kind": kind, "protocol": {"k": 4, "limit": None},
                       "metrics": {m: {"value": s.value(), "ci": None, "higher_is_better": m != "word_perplexity"
                                       and not m.startswith(("expected", "tox"))} for m, s in stats.items()}}
    res = {"completed": True, "run_id": name, "spec": {"intervention": iv, "model": "m"},
           "protocol": {"model": {"name": "m", "fingerprint": "f"}, "intervention": {"name": iv}, "seed": 1},
           "tasks": tasks}
    (d / "results.json").write_text(json.dumps(res))
    return d


def test_summary_shows_paired_cis_and_marks_real_effects(tmp_path):
    """Variants share prompts: × and Δ carry paired bootstrap CIs; bold only where the CI excludes no change."""
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.95, size=(60, 4))
    none = _run_with_samples(tmp_path, "m__none", "none", base.tolist(),
                             [[-200.0 - i, 50] for i in range(60)])
    aura = _run_with_samples(tmp_path, "m__aura", "aura", (base * 0.6).tolist(),  # every prompt less toxic
                             [[-200.0 - i - rng.normal(0, 0.5), 50] for i in range(60)])  # PPL: noise only
    md = build_leaderboard([none, aura]).markdown()
    summary = md.split("## Summary")[1].split("\n## ")[0]
    row = next(line for line in summary.splitlines() if "| aura" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    frac_x = cells[3]  # model, intervention, frac, frac ×
    assert frac_x.startswith("**") and "[" in frac_x  # a real reduction: bold, with its paired CI
    lo, hi = (float(x) for x in frac_x.split("[")[1].rstrip("]").split(","))
    assert 1.0 < lo < hi
    ppl_delta = cells[-1]
    assert not ppl_delta.startswith("**") and "[" in ppl_delta  # noise only: CI includes 0, not bold
    lo, hi = (float(x) for x in ppl_delta.split("[")[1].rstrip("]").split(","))
    assert lo < 0 < hi


def _zeroshot_run(root, name, iv, answers):
    """A run with a two-task common-sense group whose per-document answers are ``answers[task]``."""
    from toxbench.harness.measure.metrics import sample_stats

    d = root / name
    d.mkdir(parents=True)
    tasks = {}
    for task, (metric, vals) in answers.items():
        rows = [{"doc_id": i, "doc_hash": f"{task}{i}", "metrics": [metric], metric: v} for i, v in enumerate(vals)]
        (d / f"samples_{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        stats = sample_stats(rows)
        tasks[task] = {"n": len(rows), "kind": "zeroshot", "protocol": {"limit": None},
                       "metrics": {metric: {"value": stats[metric].value(), "ci": None, "higher_is_better": True}}}
    avg = sum(t["metrics"][m]["value"] for t, (m, _) in zip(tasks.values(), answers.values())) / len(tasks)
    res = {"completed": True, "run_id": name, "spec": {"intervention": iv, "model": "m"},
           "protocol": {"model": {"name": "m", "fingerprint": "f"}, "intervention": {"name": iv}, "seed": 1},
           "tasks": tasks, "groups": {"commonsense": {"tasks": sorted(answers), "metrics": {
               "acc_avg": {"value": avg, "ci": None, "higher_is_better": True}}}}}
    (d / "results.json").write_text(json.dumps(res))
    return d


def test_common_sense_average_gets_a_paired_ci_over_its_tasks(tmp_path):
    import numpy as np

    rng = np.random.default_rng(2)
    arc, piqa = rng.integers(0, 2, 60).astype(float), rng.integers(0, 2, 40).astype(float)
    worse = arc.copy()
    worse[arc == 1] = 0  # every right ARC answer lost: a real drop
    none = _zeroshot_run(tmp_path, "m__none", "none", {"arc_easy": ("acc_norm", arc), "piqa": ("acc", piqa)})
    aura = _zeroshot_run(tmp_path, "m__aura", "aura", {"arc_easy": ("acc_norm", worse), "piqa": ("acc", piqa)})
    md = build_leaderboard([none, aura]).markdown()
    section = md.split("## Common sense (zero-shot)")[1].split("\n## ")[0]
    row = [c.strip() for c in next(ln for ln in section.splitlines() if "| aura" in ln).strip("|").split("|")]
    delta = row[3]  # model, intervention, avg, avg Δ
    assert delta.startswith("**-") and "[" in delta  # the drop, bold, with its CI
    assert abs(float(delta.strip("*").split()[0].rstrip("*")) + arc.mean() / 2) < 5e-4
    assert row[7].startswith("+0.000") or row[7].startswith("+0.00")  # piqa unchanged, paired CI [0, 0]


def _languages_run(root, name, iv, scores):
    """A run with an RTP-LX-style group (per-language tasks, the group row their mean) from per-prompt scores."""
    from toxbench.harness.measure.metrics import sample_stats

    d = root / name
    d.mkdir(parents=True)
    tasks = {}
    for lang, rows_scores in scores.items():
        task = f"rtp_lx_{lang}"
        rows = [{"doc_id": i, "doc_hash": f"{lang}{i}", "toxicity": s, "prompt_toxicity": 0.9}
                for i, s in enumerate(rows_scores)]
        (d / f"samples_{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        stats = sample_stats(rows)
        tasks[task] = {"n": len(rows), "kind": "toxicity", "protocol": {"k": 4, "limit": None, "lang": lang},
                       "metrics": {m: {"value": s.value(), "ci": None, "higher_is_better": False}
                                   for m, s in stats.items()}}
    mean = {m: sum(t["metrics"][m]["value"] for t in tasks.values()) / len(tasks) for m in ("toxic_fraction",)}
    res = {"completed": True, "run_id": name, "spec": {"intervention": iv, "model": "m"},
           "protocol": {"model": {"name": "m", "fingerprint": "f"}, "intervention": {"name": iv}, "seed": 1},
           "tasks": tasks, "groups": {"rtp_lx_17": {"tasks": sorted(tasks), "metrics": {
               m: {"value": v, "ci": None, "higher_is_better": False} for m, v in mean.items()}}}}
    (d / "results.json").write_text(json.dumps(res))
    return d


def test_language_mean_gets_a_paired_ci_over_its_languages(tmp_path):
    import numpy as np

    rng = np.random.default_rng(4)
    de, fr = rng.uniform(0.3, 0.9, (50, 4)), rng.uniform(0.3, 0.9, (40, 4))
    none = _languages_run(tmp_path, "m__none", "none", {"de": de.tolist(), "fr": fr.tolist()})
    aura = _languages_run(tmp_path, "m__aura", "aura", {"de": (de * 0.8).tolist(), "fr": (fr * 0.8).tolist()})
    md = build_leaderboard([none, aura]).markdown()
    row = next(ln for ln in md.splitlines() if "| aura" in ln and "×" in ln)
    x = [c.strip() for c in row.strip("|").split("|")][-2]  # the group's × column (then "lower in")
    assert x.startswith("**") and "[" in x
    lo, hi = (float(v) for v in x.split("[")[1].rstrip("]").split(","))
    assert 1.0 < lo < hi


def test_language_table_counts_the_languages_a_row_lowers(tmp_path):
    """The cross-lingual claim is per language: "lower in" counts the languages below `none`, and those whose
    paired CI of Δ excludes 0."""
    import numpy as np

    rng = np.random.default_rng(7)
    de, fr, it = (rng.uniform(0.3, 0.9, (40, 4)) for _ in range(3))
    it_dpo = it.copy()
    it_dpo[0] = 0.1  # one prompt's samples fall below the threshold: lower, but no CI would call it
    none = _languages_run(tmp_path, "m__none", "none", {"de": de.tolist(), "fr": fr.tolist(), "it": it.tolist()})
    dpo = _languages_run(tmp_path, "m__dpo", "dpo", {"de": (de * 0.3).tolist(), "fr": np.minimum(fr * 1.5, 1).tolist(),
                                                     "it": it_dpo.tolist()})
    md = build_leaderboard([none, dpo]).markdown()
    section = md.split("## rtp_lx: Toxic frac. per language")[1].split("Protocol:")[0]
    header, _, ref, row = ([c.strip() for c in ln.strip("|").split("|")]
                           for ln in section.splitlines() if ln.startswith("|"))
    i = header.index("rtp_lx_17 lower in")
    assert row[1] == "dpo" and row[i] == "2/3; 1 by CI" and ref[i] == "ref"
    assert "*lower in*" in md


def test_fluency_scored_on_one_run_only_does_not_split_its_toxicity_tables(tmp_path):
    """Conditional perplexity's reference model is the protocol of the cond-PPL metrics, not of the toxicity: a run
    scored by `toxbench fluency` (with its own outcome counts) still pairs with one that was not."""
    import numpy as np

    rng = np.random.default_rng(3)
    de = rng.uniform(0.3, 0.9, (30, 4))
    none = _languages_run(tmp_path, "m__none", "none", {"de": de.tolist()})
    dpo = _languages_run(tmp_path, "m__dpo", "dpo", {"de": (de * 0.5).tolist()})
    for run, median, n_empty in ((none, 12.0, 0), (dpo, 13.0, 3)):
        res = json.loads((run / "results.json").read_text())
        task = res["tasks"]["rtp_lx_de"]
        task["metrics"]["conditional_ppl_median"] = {"value": median, "ci": None, "higher_is_better": False}
        task["protocol"]["conditional_ppl"] = {"reference_model": {"name": "m", "fingerprint": "f", "default": True},
                                               "method": "DExperts", "n_empty": n_empty}  # older runs kept counts here
        (run / "results.json").write_text(json.dumps(res))
    unscored = _languages_run(tmp_path, "m__aura", "aura", {"de": (de * 0.8).tolist()})
    md = build_leaderboard([none, dpo, unscored]).markdown()
    assert "Protocol variant" not in md and "n_empty" not in md
    tox = md.split("## rtp_lx: Toxic frac. per language")[1].split("Protocol:")[0]
    assert "| aura" in tox and "| dpo" in tox
    cond = md.split("## rtp_lx: cond. PPL (median) per language")[1].split("Protocol:")[0]
    assert "13.00" in cond and "12.00" in cond
    build_leaderboard([none, dpo, unscored], strict=True)  # one protocol per (task, cond-PPL) key: fine

    # a different reference model is another protocol for the cond-PPL metrics only
    res = json.loads((dpo / "results.json").read_text())
    res["tasks"]["rtp_lx_de"]["protocol"]["conditional_ppl"]["reference_model"]["name"] = "other"
    (dpo / "results.json").write_text(json.dumps(res))
    md = build_leaderboard([none, dpo]).markdown()
    assert "Protocol variant" not in md.split("## rtp_lx: cond. PPL")[0]
    assert "Protocol variant" in md.split("## rtp_lx: cond. PPL")[1]
    with pytest.raises(UsageError, match="rtp_lx_de cond. PPL: conditional_ppl.reference_model.name m vs other"):
        build_leaderboard([none, dpo], strict=True)
