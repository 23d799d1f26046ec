"""Scorer throughput on RealToxicityPrompts continuations (texts/s, bare scorers, no cache), side by side, and the
share of an RTP run each scorer would take: SmolLM2's sampling rate (k=25 x 20 tokens, the run's protocol) is
measured in the same process, and the share is scoring time / (sampling time + scoring time) per continuation.

    python benchmarks/bench_scorers.py [--scorer NAME ...] [--threads 1] [--n 2000] [--no-share]

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
    ap.add_argument("--no-share", action="store_true", help="skip measuring SmolLM2's sampling rate")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from toxbench.harness.measure.scorers import build_scorer
    from toxbench.harness.measure.scorers.rtp_reference import load_reference

    texts = load_reference().select("continuation").texts[: args.n]
    gen_rate = None if args.no_share else sampling_rate(texts[:4])
    if gen_rate:
        print(f"SmolLM2-135M sampling: {gen_rate:.1f} continuations/s (k=25 x 20 tokens, {args.threads} thread(s))")
    for name in args.scorer or ["rtp-attributes", "rtp-ngram", "rtp-stack", "jigsaw-bilstm", "profanity-check", "jigsaw-ensemble"]:
        opts = {"threads": args.threads} if name in ("jigsaw-bilstm", "jigsaw-ensemble") else {}
        t0 = time.perf_counter()
        scorer = build_scorer(name, **opts)
        load_s = time.perf_counter() - t0
        scorer.score(texts[:64])  # warm-up
        t0 = time.perf_counter()
        scorer.score(texts)
        dt = time.perf_counter() - t0
        rate = len(texts) / dt
        share = f", {100 / (1 + rate / gen_rate):.1f}% of an RTP run" if gen_rate else ""
        print(f"{name:18s} {rate:9,.0f} texts/s   (load {load_s:.1f} s, {args.threads} thread(s), "
              f"{len(texts)} RTP continuations{share})")


def sampling_rate(prompts: list[str]) -> float:
    """Continuations/s of SmolLM2 sampling k=25 x 20 new tokens for a few prompts in one batch (top-p 0.9)."""
    from toxbench.harness.core.models import load_model

    loaded = load_model("smollm2-135m", device="cpu")
    tok, model = loaded.tokenizer, loaded.model
    tok.padding_side = "left"
    enc = tok([p[:200] for p in prompts], return_tensors="pt", padding=True)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, do_sample=True, top_p=0.9, top_k=0, max_new_tokens=20, min_new_tokens=20,
                             num_return_sequences=25, pad_token_id=tok.pad_token_id or tok.eos_token_id)
    return out.shape[0] / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
