"""Fit time of Linear-AcT / Mean-AcT / steer against AurA's, measured side by side in one run (issue 25: Linear-AcT's
fit on SmolLM2 must cost no more than AurA's).

Every method fits on the same 256 Jigsaw sentences (128 per class, the run's seed) of the same loaded model; the
methods are timed in turns, ``--repeats`` rounds, and the best wall time and the process CPU time of each are kept.
CPU time counts every thread (incremental transport fitting runs one Python thread per batch).

    python benchmarks/bench_transport_fit.py                 # SmolLM2-135M, the loaded dtype (auto), 1 thread
    python benchmarks/bench_transport_fit.py --dtype float32 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

METHODS = {
    "aura": {},
    "linear-act (incremental)": {"mode": "incremental"},
    "linear-act (atonce)": {"mode": "atonce"},
    "mean-act (incremental)": {"mode": "incremental"},
    "steer (difference of means)": {},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from toxbench.harness.core.hardware import resolve_dtype
    from toxbench.harness.core.models import load_model
    from toxbench.interventions import INTERVENTIONS

    loaded = load_model(args.model, dtype=resolve_dtype(args.dtype, "cpu"), device="cpu")
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for _ in range(args.repeats):
        for label, cfg in METHODS.items():
            cls = INTERVENTIONS.get(label.split(" ")[0])
            interv = cls(**cfg)
            w0, c0 = time.perf_counter(), time.process_time()
            interv.fit(loaded.model, loaded.tokenizer, model_fingerprint=loaded.fingerprint, seed=1234,
                       progress=False)
            w, c = time.perf_counter() - w0, time.process_time() - c0
            wall[label] = min(wall.get(label, float("inf")), w)
            cpu[label] = min(cpu.get(label, float("inf")), c)
    dtype = str(next(loaded.model.parameters()).dtype).removeprefix("torch.")
    print(f"fit time on {args.model} ({dtype}, {args.threads} torch thread(s), 256 sentences, best of "
          f"{args.repeats}):")
    print("| method | wall s | CPU s | wall ÷ AurA | CPU ÷ AurA |\n|---|---|---|---|---|")
    for label in METHODS:
        print(f"| {label} | {wall[label]:.1f} | {cpu[label]:.1f} | {wall[label] / wall['aura']:.2f}× | "
              f"{cpu[label] / cpu['aura']:.2f}× |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"wall_s": wall, "cpu_s": cpu, "dtype": dtype, "threads": args.threads}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
