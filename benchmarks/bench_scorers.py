"""Scorer throughput on RealToxicityPrompts continuations (texts/s, bare scorers, no cache), side by side.

    python benchmarks/bench_scorers.py [--scorer NAME ...] [--threads 1] [--n 2000]

Prints one line per scorer; run on an idle machine (numbers on 2 busy shared cores vary by 2-3x).
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scorer", action="append", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from toxbench.harness.measure.scorers import build_scorer
    from toxbench.harness.measure.scorers.rtp_reference import load_reference

    texts = load_reference().select("continuation").texts[: args.n]
    for name in args.scorer or ["jigsaw-bilstm", "profanity-check", "jigsaw-ensemble"]:
        opts = {"threads": args.threads} if name in ("jigsaw-bilstm", "jigsaw-ensemble") else {}
        t0 = time.perf_counter()
        scorer = build_scorer(name, **opts)
        load_s = time.perf_counter() - t0
        scorer.score(texts[:64])  # warm-up
        t0 = time.perf_counter()
        scorer.score(texts)
        dt = time.perf_counter() - t0
        print(f"{name:18s} {len(texts) / dt:9,.0f} texts/s   (load {load_s:.1f} s, {args.threads} thread(s), "
              f"{len(texts)} RTP continuations)")


if __name__ == "__main__":
    main()
