"""fp32 vs bf16 on the running CPU, side by side: is bf16 worth it here, and what does it change?

Prints the CPU's kernel set (harness/hardware.py), what ``--dtype auto`` picks, and for the embedded SmolLM2:
one MLP-sized matmul, greedy generation (8 prompts x 20 tokens) and k=25 sampling of 4 prompts, each timed in fp32
and bf16 in the same process (ratios are robust on a busy machine; absolute times are not), plus how many greedy
tokens bf16 changes. Try other CPUs' kernels on yours:

    python benchmarks/bench_dtype.py
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/bench_dtype.py
"""

from __future__ import annotations

import argparse
import time

import torch

from toxbench.harness.run.generation import generate_samples
from toxbench.harness.core.hardware import kernel_set, resolve_dtype_name
from toxbench.harness.core.models import load_model

PROMPTS = ["The weather today is", "My favourite book is about", "He opened the door and", "The city council voted",
           "In the kitchen we found", "She told the reporters that", "The old bridge was", "Scientists announced"]


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"kernels: {kernel_set('cpu')}; --dtype auto -> {resolve_dtype_name('auto', 'cpu')}; threads {a.threads}")

    x = torch.randn(400, 576)
    w = torch.randn(1536, 576)
    lin = {d: best_of(lambda d=d: [torch.nn.functional.linear(x.to(d), w.to(d)) for _ in range(50)], a.repeats)
           for d in (torch.float32, torch.bfloat16)}
    print(f"matmul 400x576 @ 576x1536 (x50): fp32 {lin[torch.float32]:.3f}s, bf16 {lin[torch.bfloat16]:.3f}s "
          f"-> bf16/fp32 speed {lin[torch.float32] / lin[torch.bfloat16]:.2f}x")

    outs, gen, samp = {}, {}, {}
    for name in ("float32", "bfloat16"):
        lm = load_model("smollm2-135m", dtype=name, device="cpu")

        def greedy(lm=lm, name=name):
            outs[name] = generate_samples(lm.model, lm.tokenizer, PROMPTS, k=1, max_new_tokens=20, do_sample=False,
                                          progress=False, batch_size=8)

        def sampled(lm=lm):
            generate_samples(lm.model, lm.tokenizer, PROMPTS[:4], k=25, max_new_tokens=20, progress=False,
                             batch_size=4)

        gen[name], samp[name] = best_of(greedy, a.repeats), best_of(sampled, a.repeats)
    tok = load_model("smollm2-135m", dtype="float32", device="cpu").tokenizer
    same_seq = sum(a_ == b_ for a_, b_ in zip(outs["float32"], outs["bfloat16"]))
    ta = [tok(s[0])["input_ids"] for s in outs["float32"]]
    tb = [tok(s[0])["input_ids"] for s in outs["bfloat16"]]
    agree = sum(x_ == y_ for a_, b_ in zip(ta, tb) for x_, y_ in zip(a_, b_))
    total = sum(max(len(a_), len(b_)) for a_, b_ in zip(ta, tb))
    print(f"greedy 8x20: fp32 {gen['float32']:.2f}s, bf16 {gen['bfloat16']:.2f}s -> bf16/fp32 speed "
          f"{gen['float32'] / gen['bfloat16']:.2f}x; identical sequences {same_seq}/8, tokens agreeing "
          f"{agree}/{total} ({agree / max(total, 1):.0%})")
    print(f"sampling 4 prompts x k=25 x 20: fp32 {samp['float32']:.2f}s, bf16 {samp['bfloat16']:.2f}s -> bf16/fp32 "
          f"speed {samp['float32'] / samp['bfloat16']:.2f}x")


if __name__ == "__main__":
    main()
