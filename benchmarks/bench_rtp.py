"""RTP sampling throughput: prompts/min for k=25 continuations x 20 new tokens, three ways, side by side.

  (a) one sample per ``model.generate`` call (25 calls per prompt)
  (b) one prompt per call with ``num_return_sequences=25``
  (c) toxbench: ``generation.generate_samples`` (prefill once, shared KV cache, prompts batched by length)

All three sample with top_p=0.9, top_k=0, temperature 1 (the RTP protocol) on the same RTP prompts, in the same
process and dtype, interleaved (a, b, c, a, b, c ...) rounds so that a change in machine load hits them alike. Also
measures the default scorer's throughput (texts/s) on fresh texts (no score cache).

    python benchmarks/bench_rtp.py                      # defaults: SmolLM2, 1 torch thread
    python benchmarks/bench_rtp.py --prompts-c 48 --rounds 2 --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def _load_prompts(n: int) -> list[str]:
    from toxbench.harness.core.paths import data_dir

    path = data_dir() / "realtoxicityprompts/decodingtrust/toxic.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    step = max(1, len(rows) // max(n, 1))
    return [r["prompt"]["text"] for r in rows[::step][:n]]  # spread over the file: a representative length mix


def _hf_generate(model, tok, prompt: str, n: int, k: int, max_new: int):
    import torch

    ids = tok(prompt, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        out = model.generate(
            **ids, do_sample=True, top_p=0.9, top_k=0, temperature=1.0, max_new_tokens=max_new,
            num_return_sequences=n, pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
    return tok.batch_decode(out[:, ids.input_ids.shape[1]:], skip_special_tokens=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--k", type=int, default=25)
    ap.add_argument("--max-new-tokens", type=int, default=20)
    ap.add_argument("--prompts-a", type=int, default=1, help="prompts per round for (a) (25 calls each)")
    ap.add_argument("--prompts-b", type=int, default=2, help="prompts per round for (b)")
    ap.add_argument("--prompts-c", type=int, default=16, help="prompts per round for (c)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16, help="(c): prompts per batch (each decodes k rows)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scorer", default=None, help="scorer to time (default: the default scorer, then jigsaw-bilstm)")
    ap.add_argument("--scorer-texts", type=int, default=5000)
    ap.add_argument("--skip", default="", help="comma list of a,b,c,scorer to skip")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from toxbench.harness.run.generation import generate_samples
    from toxbench.harness.core.models import load_model

    skip = set(filter(None, args.skip.split(",")))
    lm = load_model(args.model, dtype=args.dtype)
    model, tok = lm.model, lm.tokenizer
    n_max = max(args.prompts_a, args.prompts_b, args.prompts_c) * args.rounds * 3
    pool = _load_prompts(n_max)
    load_before = os.getloadavg()
    secs = {"a": 0.0, "b": 0.0, "c": 0.0}
    counts = {"a": 0, "b": 0, "c": 0}
    texts: list[str] = []
    cursor = 0

    def take(n: int) -> list[str]:
        nonlocal cursor
        out = pool[cursor:cursor + n]
        cursor += n
        return out

    # warm-up (first-call allocations, oneDNN kernels) outside the clock
    generate_samples(model, tok, pool[:1], k=2, max_new_tokens=2, progress=False)
    _hf_generate(model, tok, pool[0], 2, 2, 2)

    for r in range(args.rounds):
        if "a" not in skip:
            ps = take(args.prompts_a)
            t = time.perf_counter()
            for p in ps:
                for _ in range(args.k):
                    texts += _hf_generate(model, tok, p, 1, args.k, args.max_new_tokens)
            secs["a"] += time.perf_counter() - t
            counts["a"] += len(ps)
        if "b" not in skip:
            ps = take(args.prompts_b)
            t = time.perf_counter()
            for p in ps:
                texts += _hf_generate(model, tok, p, args.k, args.k, args.max_new_tokens)
            secs["b"] += time.perf_counter() - t
            counts["b"] += len(ps)
        if "c" not in skip:
            ps = take(args.prompts_c)
            t = time.perf_counter()
            outs = generate_samples(model, tok, ps, k=args.k, max_new_tokens=args.max_new_tokens, do_sample=True,
                                    temperature=1.0, top_p=0.9, top_k=0, seed=1234 + r,
                                    batch_size=args.batch_size, progress=False)
            secs["c"] += time.perf_counter() - t
            counts["c"] += len(ps)
            texts += [s for o in outs for s in o]
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{p}={counts[p] / secs[p] * 60:.1f}/min" for p in "abc" if counts[p]), flush=True)

    rate = {p: counts[p] / secs[p] * 60 for p in "abc" if counts[p]}
    result = {
        "model": lm.name, "dtype": str(model.dtype), "k": args.k, "max_new_tokens": args.max_new_tokens,
        "threads": args.threads, "batch_size_c": args.batch_size, "rounds": args.rounds,
        "prompts": counts, "seconds": {p: round(s, 2) for p, s in secs.items()},
        "prompts_per_min": {p: round(v, 2) for p, v in rate.items()},
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
    }
    if "b" in rate:
        result["ratio_c_over_b"] = round(rate.get("c", float("nan")) / rate["b"], 2)
        result["ratio_b_over_a"] = round(rate["b"] / rate["a"], 2) if "a" in rate else None

    if "scorer" not in skip:
        from toxbench.harness.measure.scorers import DEFAULT_SCORER, get_scorer

        names = [args.scorer] if args.scorer else list(dict.fromkeys([DEFAULT_SCORER, "jigsaw-bilstm"]))
        # fresh texts: the generated continuations plus RTP continuations, made unique (no cache hits possible)
        from toxbench.harness.core.paths import data_dir

        for f in ("toxic", "nontoxic"):
            p = data_dir() / f"realtoxicityprompts/decodingtrust/{f}.jsonl"
            texts += [json.loads(line)["continuation"]["text"] for line in p.read_text(encoding="utf-8").splitlines()]
        fresh = list(dict.fromkeys(texts))
        reps = args.scorer_texts // max(len(fresh), 1) + 1
        fresh = [f"{t} #{i}" for i, t in enumerate((fresh * reps)[: args.scorer_texts])]
        result["scorers"] = []
        for name in names:
            scorer = get_scorer(name, use_cache=False)
            scorer.score(fresh[:64])  # warm-up (model load, first-call allocations)
            t = time.perf_counter()
            scorer.score(fresh)
            dt = time.perf_counter() - t
            result["scorers"].append({"name": scorer.id, "texts": len(fresh), "texts_per_s": round(len(fresh) / dt, 1)})

    print()
    print(f"{'path':<44}{'prompts':>8}{'seconds':>9}{'prompts/min':>13}")
    names = {"a": "(a) 1 sample per generate call", "b": "(b) 1 prompt/call, num_return_sequences=k",
             "c": "(c) toxbench generate_samples"}
    for p in "abc":
        if counts[p]:
            print(f"{names[p]:<44}{counts[p]:>8}{secs[p]:>9.1f}{rate[p]:>13.2f}")
    if "ratio_c_over_b" in result:
        print(f"ratio (c)/(b) = {result['ratio_c_over_b']}  (goal >= 3)"
              + (f"   (b)/(a) = {result['ratio_b_over_a']}" if result.get("ratio_b_over_a") else ""))
    for s in result.get("scorers", []):
        print(f"scorer {s['name']}: {s['texts_per_s']} texts/s on {s['texts']} fresh texts (goal >= 1000)")
    print(f"load average before {result['loadavg_before']} after {result['loadavg_after']}; "
          f"{args.threads} torch thread(s); {model.dtype}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
