"""Issue 24: matched-cost frontiers: interpolation on hand-made curves with known answers, paired bootstrap CIs
that cover a known effect in a simulation, protocol guard, and the leaderboard section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toxbench.harness.measure.metrics import RatioStat
from toxbench.harness.report.frontier import Frontier, build_curves, interpolate_at
from toxbench.harness.report.results import Run


def test_interpolation_known_answers():
    costs, tox = [0.0, 10.0, 30.0], [0.5, 0.3, 0.1]
    assert interpolate_at(costs, tox, 5.0) == pytest.approx(0.4)
    assert interpolate_at(costs, tox, 10.0) == pytest.approx(0.3)
    assert interpolate_at(costs, tox, 20.0) == pytest.approx(0.2)
    assert interpolate_at(costs, tox, 30.0) == pytest.approx(0.1)
    assert interpolate_at(costs, tox, 31.0) is None  # never extrapolated
    # a curve whose cost dips: the first crossing from the unmitigated end counts
    assert interpolate_at([0.0, 8.0, 6.0, 20.0], [0.5, 0.3, 0.2, 0.1], 7.0) == pytest.approx(0.5 - 0.2 * 7 / 8)


def _run(name: str, iv: str, args: dict, tox: np.ndarray, ppl: np.ndarray, limit: int = 8) -> Run:
    proto = {"limit": limit, "dtype": "float32"}
    results = {
        "run_id": name, "completed": True,
        "spec": {"model": "m", "intervention": iv, "intervention_args": [[k, v] for k, v in args.items()],
                 "seed": 1},
        "protocol": {"model": {"name": "m", "fingerprint": "f"}, "intervention": {"name": iv, **args}, "seed": 1},
        "tasks": {
            "rtp_challenging": {"n": len(tox), "kind": "toxicity", "protocol": proto,
                                "metrics": {"toxic_fraction": {"value": float(tox.mean())}}},
            "wiki_sentences": {"n": len(ppl), "kind": "perplexity", "protocol": proto,
                               "metrics": {"perplexity": {"value": float(ppl.mean())}}},
        },
    }
    run = Run(Path(name), results, 0.0)
    keys_t, keys_c = tuple(f"p{i}" for i in range(len(tox))), tuple(f"s{i}" for i in range(len(ppl)))
    run._stats["rtp_challenging"] = {"toxic_fraction": RatioStat(tox.astype(float), np.ones(len(tox)), keys=keys_t)}
    run._stats["wiki_sentences"] = {"perplexity": RatioStat.mean(ppl, keys_c)}
    return run


def _world(rng, n_prompts=300, n_sent=100, effect=0.0):
    """none + two methods: aura (strength 0.5, 1) and damp (k 100, 200); damp is `effect` less toxic at equal cost."""
    base_ppl = rng.lognormal(3.0, 0.3, n_sent)
    def tox(p):
        return (rng.random(n_prompts) < p).astype(float)
    runs = [_run("none", "none", {}, tox(0.5), base_ppl)]
    for s, p, c in ((0.5, 0.4, 1.10), (1.0, 0.3, 1.30)):
        runs.append(_run(f"aura{s}", "aura", {"strength": s}, tox(p), base_ppl * c))
    for k, p, c in ((100, 0.4 - effect, 1.10), (200, 0.3 - effect, 1.30)):
        runs.append(_run(f"damp{k}", "damp", {"k": k}, tox(p), base_ppl * c))
    return runs


def test_curves_and_table():
    runs = _world(np.random.default_rng(0))
    refs, curves = build_curves(runs, "rtp_challenging", "wiki_sentences")
    assert set(refs) == {"m"} and sorted(c.method for c in curves) == ["aura", "damp"]
    aura = next(c for c in curves if c.method == "aura")
    assert [k for k, _ in aura.points] == [0.0, 0.5, 1.0] and aura.label == "aura (strength 0, 0.5, 1)"
    fr = Frontier("rtp_challenging", "wiki_sentences", curves, n_bootstrap=300)
    costs, _ = fr.point_values(aura)
    assert costs == pytest.approx([0.0, 10.0, 30.0])
    table = fr.table()
    assert "out of range" not in table.to_string() and table.shape[0] == 2
    damp = next(c for c in curves if c.method == "damp")
    assert list(table["vs aura at +10%"]) == ["ref", fr.versus(damp, aura, 10.0)]  # every cost, not only +10%
    assert table.loc[1, "vs aura at +5%"].strip("*").startswith(
        f"{fr.at_cost(damp, 5.0)[0] - fr.at_cost(aura, 5.0)[0]:+.3f} [")
    value, ci = fr.at_cost(aura, 40.0)
    assert value is None and ci is None  # beyond the strongest point: out of range


def test_a_run_under_another_protocol_is_left_off_the_curve():
    runs = _world(np.random.default_rng(1))
    other = _world(np.random.default_rng(2))[1]
    other.results["tasks"]["rtp_challenging"]["protocol"] = {"limit": 99, "dtype": "float32"}
    other.results["run_id"] = "aura-other"
    _, curves = build_curves([*runs, other], "rtp_challenging", "wiki_sentences")
    assert all(r.run_id != "aura-other" for c in curves for _, r in c.points)


def test_paired_ci_covers_a_known_difference():
    """Simulation: damp is 0.05 less toxic than aura at every cost; the paired CI of the difference at +10% covers
    -0.05 in about 95% of worlds (and an absent effect is rarely called significant)."""
    covered, n = 0, 60
    for seed in range(n):
        rng = np.random.default_rng(100 + seed)
        runs = _world(rng, effect=0.05)
        _, curves = build_curves(runs, "rtp_challenging", "wiki_sentences")
        fr = Frontier("rtp_challenging", "wiki_sentences", curves, seed=seed, n_bootstrap=300)
        aura, damp = (next(c for c in curves if c.method == m) for m in ("aura", "damp"))
        diff = fr._curve_replicates(damp, 10.0) - fr._curve_replicates(aura, 10.0)
        lo, hi = np.percentile(diff, [2.5, 97.5])
        covered += lo <= -0.05 <= hi
    assert covered / n >= 0.85


def test_the_leaderboard_has_the_matched_cost_section_and_plot(tmp_path, monkeypatch):
    from toxbench.harness.report.leaderboard import Leaderboard
    from toxbench.harness.report.plots import plot_frontiers
    from toxbench.harness.report.results import Collection

    runs = _world(np.random.default_rng(3))
    lb = Leaderboard.__new__(Leaderboard)  # the tables need cells; the frontier section needs only the runs
    lb.collection = Collection(runs)
    curves = build_curves(runs, "rtp_challenging", "wiki_sentences")[1]
    lb._frontiers = [Frontier("rtp_challenging", "wiki_sentences", curves, n_bootstrap=200)]
    (png, data), = plot_frontiers(lb, tmp_path, "board")
    assert png.is_file() and png.stat().st_size > 5000 and set(data.method) == {"aura", "damp"}
    from toxbench.harness.report.markdown import matched_cost_summary

    lead, table = matched_cost_summary(lb)  # the Summary's matched-cost figure: one row per method at +10%
    assert "+10% wiki_sentences perplexity" in lead
    rows = [line for line in table.splitlines()[2:]]
    assert [r.split("|")[2].strip() for r in rows] == ["aura", "damp"]
    assert table.splitlines()[0].count("|") - 1 == 5 and "best" in table and "vs aura at +10%" in table
    fr = lb._frontiers[0]
    aura, damp = curves
    assert f"{fr.at_cost(aura, 10.0)[0]:.3f}" in rows[0] and rows[0].rstrip(" |").endswith("ref")
    diff = fr.at_cost(damp, 10.0)[0] - fr.at_cost(aura, 10.0)[0]
    assert f"{diff:+.3f}" in rows[1].split("|")[-2]  # damp against AurA's curve, with its paired CI


def _split(run: Run) -> list[Run]:
    """The run as a suite writes it when its two tasks have different limits: one run dir per task."""
    out = []
    for task in ("rtp_challenging", "wiki_sentences"):
        results = {**run.results, "run_id": f"{run.run_id}-{task}", "tasks": {task: run.results["tasks"][task]}}
        part = Run(Path(f"{run.path}-{task}"), results, 0.0)
        part._stats[task] = run._stats[task]
        out.append(part)
    return out


def test_curves_join_a_setting_measured_in_two_run_dirs():
    rng = np.random.default_rng(3)
    joined = _world(rng)
    split = [part for r in joined for part in _split(r)]
    _, a = build_curves(joined, "rtp_challenging", "wiki_sentences")
    _, b = build_curves(split, "rtp_challenging", "wiki_sentences")
    assert [c.label for c in a] == [c.label for c in b]
    fa, fb = Frontier("rtp_challenging", "wiki_sentences", a), Frontier("rtp_challenging", "wiki_sentences", b)
    for ca, cb in zip(a, b):
        assert fa.point_values(ca) == fb.point_values(cb)
        assert fa.at_cost(ca, 10.0) == fb.at_cost(cb, 10.0)
    lonely = [r for r in split if "wiki" not in r.run_id]  # no cost run: no curve
    assert build_curves(lonely, "rtp_challenging", "wiki_sentences")[1] == []


def test_every_strength_knob_has_its_default_point():
    """A sweep point at a method's default strength carries no argument: it must still sit on the curve."""
    from toxbench.harness.report.frontier import DEFAULT_KNOB
    from toxbench.interventions import INTERVENTIONS

    for name in INTERVENTIONS.names():
        cls = INTERVENTIONS.get(name)
        key = getattr(cls, "strength_key", None)
        if key:
            assert DEFAULT_KNOB.get(name) == (key, float(cls.defaults[key])), name


def test_the_costs_are_a_choice_and_a_bad_one_is_one_line(tmp_path):
    from click.testing import CliRunner

    from toxbench.harness.cli import main
    from toxbench.harness.report.frontier import frontiers

    runs = _world(np.random.default_rng(3))
    (fr,) = frontiers(runs, ["rtp_challenging"], ["wiki_sentences"], costs=(2.0, 7.5))
    assert [c for c in fr.table().columns if c.startswith("toxic frac.")] == ["toxic frac. at +2% PPL",
                                                                            "toxic frac. at +7.5% PPL"]
    for bad in ("abc", "0,5", ""):
        r = CliRunner().invoke(main, ["leaderboard", str(tmp_path), "--costs", bad])
        assert r.exit_code == 2 and "--costs" in r.output and "Traceback" not in r.output


def _with_probability(run: Run, prob: np.ndarray) -> Run:
    """The run with a per-prompt toxicity probability beside its toxic fraction (as metrics.py records both)."""
    task = run.results["tasks"]["rtp_challenging"]
    task["metrics"]["toxicity_probability"] = {"value": float(prob.mean())}
    keys = run._stats["rtp_challenging"]["toxic_fraction"].keys
    run._stats["rtp_challenging"]["toxicity_probability"] = RatioStat(prob.astype(float), np.ones(len(prob)),
                                                                      keys=keys)
    return run


def test_toxicity_probability_is_read_off_at_matched_cost_too(tmp_path):
    """The AurA paper's second metric gets its own matched-cost table (known answers on a hand-made curve); the
    board prints it after the toxic fraction's, while the Summary and the plot keep the toxic fraction."""
    from toxbench.harness.report.frontier import frontiers
    from toxbench.harness.report.leaderboard import Leaderboard
    from toxbench.harness.report.markdown import matched_cost_summary
    from toxbench.harness.report.plots import plot_frontiers
    from toxbench.harness.report.results import Collection

    rng = np.random.default_rng(5)
    runs = _world(rng)
    # aura's probability: 0.8 at none (cost 0), 0.6 at strength 0.5 (+10%), 0.2 at strength 1 (+30%)
    for r, p in zip(runs, (0.8, 0.6, 0.2, 0.7, 0.5)):
        _with_probability(r, (np.arange(300) < p * 300).astype(float))
    tf, tp = frontiers(runs, ["rtp_challenging"], ["wiki_sentences"], costs=(5.0, 20.0))
    assert (tf.metric, tp.metric) == ("toxic_fraction", "toxicity_probability")
    aura = next(c for c in tp.curves if c.method == "aura")
    assert tp.at_cost(aura, 5.0)[0] == pytest.approx(0.7) and tp.at_cost(aura, 20.0)[0] == pytest.approx(0.4)
    assert tp.at_cost(aura, 5.0)[0] != tf.at_cost(aura, 5.0)[0]
    cols = list(tp.table().columns)
    assert "tox. prob. at +5% PPL" in cols and "vs aura at +20%" in cols and not any("toxic frac." in c for c in cols)

    lb = Leaderboard.__new__(Leaderboard)
    lb.collection = Collection(runs)
    lb._frontiers = [tf, tp]
    assert lb.frontiers("toxic_fraction") == [tf] and lb.frontiers() == [tf, tp]
    lead, _ = matched_cost_summary(lb)
    assert "toxic fraction" in lead
    assert len(plot_frontiers(lb, tmp_path, "board")) == 1

    # a run that does not carry the metric: no table for it, rather than a KeyError
    del runs[1].results["tasks"]["rtp_challenging"]["metrics"]["toxicity_probability"]
    assert [f.metric for f in frontiers(runs, ["rtp_challenging"], ["wiki_sentences"])] == ["toxic_fraction"]
