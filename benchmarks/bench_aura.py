"""AurA benchmark, all in one run on the same data: SmolLM2-135M, 256 Jigsaw sentences (128 per class).

1. Response collection (sentences/s): arrival order vs length-sorted batches (same results, checked).
2. AUROC of all 109,440 units: ours (vectorized ranks) vs ml-aura's way (sklearn ``roc_auc_score`` on chunks
   of 10 units over a multiprocessing Pool of 2), checked equal.
3. Generation time: hooked / plain and folded / plain (greedy, same prompts, interleaved repeats, best of N).

    python benchmarks/bench_aura.py                # full (ml-aura's AUROC takes minutes)
    python benchmarks/bench_aura.py --sklearn-units 10000   # extrapolate ml-aura's time from a subset
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import numpy as np
import torch

PROMPTS = [
    "The weather this morning was",
    "She opened the letter and",
    "My neighbour told me that the new",
    "After the meeting, the manager said",
    "The best way to cook rice is",
    "When we arrived at the station, the",
    "He looked at the painting and",
    "The children ran into the garden because",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n-per-class", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (ml-aura's Pool also gets 2 processes)")
    ap.add_argument("--sklearn-units", type=int, default=0,
                    help="time ml-aura's AUROC on this many units and extrapolate (0 = all units)")
    ap.add_argument("--gen-repeats", type=int, default=5)
    ap.add_argument("--gen-threads", type=int, default=1,
                    help="torch threads while timing generation (1: OpenMP on a shared machine makes 2 noisy)")
    ap.add_argument("--max-new-tokens", type=int, default=20)
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from toxbench.harness.core.models import load_model
    from toxbench.harness.core.paths import data_file
    from toxbench.interventions.aura import DEFAULT_DATA, AurA, load_labelled_texts
    from toxbench.interventions.auroc import auroc, auroc_sklearn_reference
    from toxbench.interventions.fold import fold_scales
    from toxbench.interventions.forward_hooks import resolve_modules
    from toxbench.interventions.module_presets import default_patterns
    from toxbench.interventions.responses import collect_responses

    res: dict[str, float] = {}
    loaded = load_model(args.model, dtype="float32", device="cpu")
    model, tok = loaded.model, loaded.tokenizer
    names = resolve_modules(model, default_patterns(model))
    texts, labels = load_labelled_texts(data_file(DEFAULT_DATA), 0, 1, args.n_per_class, seed=42)
    n = len(texts)
    print(f"model {args.model}: {len(names)} modules; {n} sentences; torch threads {args.threads}")

    # -- 1. response collection ----------------------------------------------------------------------------------
    c, t = time.process_time(), time.perf_counter()
    arrival = collect_responses(model, tok, texts, labels, names, batch_size=args.batch_size,
                                sort_by_length=False, progress=False)
    res["responses_arrival_s"] = time.perf_counter() - t
    res["responses_arrival_cpu_s"] = time.process_time() - c
    c, t = time.process_time(), time.perf_counter()
    resp = collect_responses(model, tok, texts, labels, names, batch_size=args.batch_size, progress=False)
    res["responses_sorted_s"] = time.perf_counter() - t
    res["responses_sorted_cpu_s"] = time.process_time() - c
    diff = max((arrival.per_module[k] - resp.per_module[k]).abs().max().item() for k in names)
    units = resp.n_units
    rel = diff / max(resp.per_module[k].abs().max().item() for k in names)
    print(f"\n[responses] {units:,} units, batch {args.batch_size}, max |arrival - sorted| = {diff:.2e} "
          f"({rel:.1e} of the largest response: float reassociation across batch shapes)")
    print(f"  arrival order : {n / res['responses_arrival_s']:6.2f} sentences/s ({res['responses_arrival_s']:.1f} s)")
    print(f"  length-sorted : {n / res['responses_sorted_s']:6.2f} sentences/s ({res['responses_sorted_s']:.1f} s)"
          f"   goal >= 6/s")
    print(f"  (CPU seconds: arrival {res['responses_arrival_cpu_s']:.1f}, sorted {res['responses_sorted_cpu_s']:.1f}; "
          f"wall >> CPU / {args.threads} means the machine was busy)")

    # -- 2. AUROC --------------------------------------------------------------------------------------------------
    x_units = torch.cat([resp.per_module[k] for k in names])  # [units, sentences], unit-major
    x = x_units.T
    y = resp.labels
    auroc(x[:, :1000], y)  # warm-up
    times = []
    for _ in range(3):  # best of 3: a sub-second figure is at the mercy of one scheduler hiccup
        t = time.perf_counter()
        ours = auroc(x, y)
        times.append(time.perf_counter() - t)
    res["auroc_ours_s"] = min(times)
    xs, ys = x.contiguous().numpy(), y.numpy()
    m = units if args.sklearn_units <= 0 else min(args.sklearn_units, units)
    t = time.perf_counter()
    theirs = auroc_sklearn_reference(xs[:, :m], ys, chunk_size=10, processes=2)
    res["auroc_mlaura_s"] = (time.perf_counter() - t) * units / m
    err = float(np.abs(ours.numpy()[:m] - theirs).max())
    res["auroc_speedup"] = res["auroc_mlaura_s"] / res["auroc_ours_s"]
    extrap = "" if m == units else f" (timed on {m:,} units, extrapolated)"
    print(f"\n[auroc] {units:,} units x {n} sentences, max |ours - sklearn| = {err:.1e}")
    print(f"  ml-aura's way (sklearn, chunks of 10, Pool(2)) : {res['auroc_mlaura_s']:8.2f} s{extrap}")
    print(f"  ours (vectorized ranks, best of 3)            : {res['auroc_ours_s']:8.3f} s")
    print(f"  speed-up                                      : {res['auroc_speedup']:8.0f}x   goal >= 100x")
    res["fit_s"] = res["responses_sorted_s"] + res["auroc_ours_s"]
    print(f"\n[fit] responses + AUROC = {res['fit_s']:.1f} s   goal < 120 s")

    # -- 3. generation ---------------------------------------------------------------------------------------------
    interv = AurA()
    alphas = interv.alphas({k: a.float() for k, a in zip(names, torch.split(ours, [resp.per_module[k].shape[0]
                                                                                      for k in names]))})
    from toxbench.interventions.base import State

    interv = AurA(state=State(alphas, {"method": "aura"}))
    folded = copy.deepcopy(model)
    fold_scales(folded, alphas)
    tok.padding_side = "left"
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    gen_kw = dict(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens, do_sample=False,
                  pad_token_id=tok.pad_token_id)

    def run(which: str) -> tuple[float, float, torch.Tensor]:
        mdl = folded if which == "folded" else model
        c0, t0 = time.process_time(), time.perf_counter()
        with torch.inference_mode():
            if which == "hooked":
                with interv.attach(model):
                    out = mdl.generate(**enc, **gen_kw)
            else:
                out = mdl.generate(**enc, **gen_kw)
        return time.perf_counter() - t0, time.process_time() - c0, out

    torch.set_num_threads(args.gen_threads)
    run("plain")  # warm-up
    times: dict[str, list[float]] = {"plain": [], "hooked": [], "folded": []}
    cpu: dict[str, list[float]] = {"plain": [], "hooked": [], "folded": []}
    outs = {}
    for _ in range(args.gen_repeats):
        for which in times:  # interleaved, so load changes hit all three alike
            dt, dc, outs[which] = run(which)
            times[which].append(dt)
            cpu[which].append(dc)
    best = {k: min(v) for k, v in times.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    res.update({f"gen_{k}_s": v for k, v in best.items()})
    res["gen_hooked_over_plain"] = best["hooked"] / best["plain"]
    res["gen_folded_over_plain"] = best["folded"] / best["plain"]
    res["gen_hooked_over_plain_cpu"] = best_cpu["hooked"] / best_cpu["plain"]
    res["gen_folded_over_plain_cpu"] = best_cpu["folded"] / best_cpu["plain"]
    same = bool(torch.equal(outs["hooked"], outs["folded"]))
    toks = len(PROMPTS) * args.max_new_tokens
    print(f"\n[generation] {len(PROMPTS)} prompts x {args.max_new_tokens} new tokens, greedy, best of "
          f"{args.gen_repeats}, {args.gen_threads} thread(s); hooked and folded tokens identical: {same}")
    print(f"  plain  : {best['plain']:.3f} s ({toks / best['plain']:.0f} tok/s)")
    print(f"  hooked : {best['hooked']:.3f} s   hooked/plain = {res['gen_hooked_over_plain']:.3f}x   goal <= 1.05x")
    print(f"  folded : {best['folded']:.3f} s   folded/plain = {res['gen_folded_over_plain']:.3f}x   goal 1.00x")
    print(f"  (CPU-time ratios, robust to a busy machine: hooked/plain = {res['gen_hooked_over_plain_cpu']:.3f}x, "
          f"folded/plain = {res['gen_folded_over_plain_cpu']:.3f}x)")
    if args.json:
        from toxbench.harness.core.io import atomic_write_json

        atomic_write_json(args.json, res)
    print("\n" + json.dumps({k: round(v, 4) for k, v in res.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
