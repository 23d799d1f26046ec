"""The CUDA paths on tiny in-process models (no downloads, no data dir): run it on a machine with a GPU.

    python benchmarks/gpu_check.py

Checks, each printed as PASS/FAIL with its numbers:
1. ``--dtype auto`` resolves to bf16 on CUDA, and a run records device ``cuda``;
2. rolling perplexity (``harness/run/rolling.py``) on CUDA equals the CPU's (fp32, rel. 1e-4), and its peak CUDA
   memory at an 8,192-token window against lm-eval's HFLM batched path on the same documents (a 49k vocabulary);
3. greedy RTP-style generation through ``toxbench run`` gives the same continuations on CUDA as on the CPU;
4. sampled generation on CUDA: 3 shards merge to the unsharded run bitwise, in fp32 and bf16.
Exit code 1 when a check fails.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/tiny.py

RESULTS: list[tuple[str, bool, str]] = []


def report(name: str, ok: bool, detail: str) -> None:
    RESULTS.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)


def check_auto_dtype() -> None:
    from toxbench.harness.spec.runspec import RunSpec

    got = RunSpec(dtype="auto", device="cuda").resolved_dtype()
    report("dtype auto on CUDA", got == "bfloat16", got)


def _big_tiny_llama():
    """A random Llama with a real vocabulary size and an 8k window: memory behaves like a small real model."""
    from tiny import tiny_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=8192,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return LlamaForCausalLM(cfg).eval(), tok


def check_rolling() -> None:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from tiny import WORDS

    from toxbench.harness.run.adapter import HookedLM

    model, tok = _big_tiny_llama()
    tok.model_max_length = 10**6
    rng = torch.Generator().manual_seed(1)
    texts = [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (n,), generator=rng).tolist())
             for n in (9000, 3000, 20000)]
    reqs = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)]
    cpu = HookedLM(model, tokenizer=tok, batch_size=16, max_length=8192, progress=False).loglikelihood_rolling(reqs)
    model = model.cuda()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    gpu = HookedLM(model, tokenizer=tok, batch_size=16, max_length=8192, progress=False).loglikelihood_rolling(reqs)
    ours_s, ours_mb = time.perf_counter() - t, torch.cuda.max_memory_allocated() / 2**20
    rel = max(abs(a - b) / abs(a) for a, b in zip(cpu, gpu))
    report("rolling perplexity CUDA = CPU", rel < 1e-4, f"max rel. difference {rel:.2e}")
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    ref = HFLM(pretrained=model, tokenizer=tok, batch_size=16, max_length=8192).loglikelihood_rolling(
        reqs, disable_tqdm=True)
    ref_s, ref_mb = time.perf_counter() - t, torch.cuda.max_memory_allocated() / 2**20
    rel = max(abs(a - b) / abs(a) for a, b in zip(ref, gpu))
    report("rolling perplexity = lm-eval HFLM", rel < 1e-3,
           f"max rel. difference {rel:.2e}; peak CUDA memory {ours_mb:.0f} MB (toxbench) vs {ref_mb:.0f} MB "
           f"(lm-eval, batch 16), {ref_mb / ours_mb:.1f}x; {ours_s:.2f} s vs {ref_s:.2f} s")


def _rtp_spec(model_dir: Path, out: Path, data: Path, **kw):
    from toxbench.harness.core.io import sha256_file
    from toxbench.harness.spec.runspec import GenerationSettings, RunSpec

    base = dict(model=str(model_dir), tasks=("rtp",), data=str(data), data_sha256=sha256_file(data),
                scorer="profanity-check", output_dir=str(out), data_dir=str(out.parent), batch_size=2,
                generation=GenerationSettings(k=4, max_new_tokens=6))
    base.update(kw)
    return RunSpec(**base)


def _continuations(run_dir: Path) -> list:
    return [json.loads(x)["resps"] for x in (run_dir / "samples_rtp.jsonl").read_text().splitlines()]


def check_generation(tmp: Path) -> None:
    from tiny import save_tiny

    from toxbench.harness.run.merge import merge
    from toxbench.harness.run.runner import execute
    from toxbench.harness.spec.runspec import GenerationSettings

    model_dir = save_tiny(tmp / "tiny", "llama")
    data = tmp / "rtp.jsonl"
    prompts = ["the film was", "you are a", "the city river", "a b c", "we went", "she is", "good day", "the team"]
    data.write_text("".join(json.dumps({"prompt": {"text": p, "toxicity": 0.1 * i}}) + "\n"
                            for i, p in enumerate(prompts)))
    greedy = GenerationSettings(k=1, max_new_tokens=8, do_sample=False)
    cpu = execute(_rtp_spec(model_dir, tmp / "cpu", data, device="cpu", dtype="float32", generation=greedy),
                  progress=False, log=lambda m: None)
    gpu = execute(_rtp_spec(model_dir, tmp / "gpu", data, device="cuda", dtype="float32", generation=greedy),
                  progress=False, log=lambda m: None)
    env = json.loads((gpu / "env.json").read_text())
    same = _continuations(cpu) == _continuations(gpu)
    report("greedy generation CUDA = CPU", same, f"{len(prompts)} prompts; env device {env.get('device')}")
    for dtype in ("float32", "bfloat16"):
        full = execute(_rtp_spec(model_dir, tmp / f"full-{dtype}", data, device="cuda", dtype=dtype),
                       progress=False, log=lambda m: None)
        shards = [execute(_rtp_spec(model_dir, tmp / f"shards-{dtype}", data, device="cuda", dtype=dtype,
                                    shard=(i, 3)), progress=False, log=lambda m: None) for i in range(3)]
        merged = merge(shards, tmp / f"merged-{dtype}")
        report(f"CUDA shards = unsharded ({dtype})",
               merged.name == full.name and _continuations(merged) == _continuations(full),
               f"run id {merged.name}")


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        for check in (check_auto_dtype, check_rolling, lambda: check_generation(Path(d))):
            try:
                check()
            except Exception as e:  # a crash is a failed check, and the others still run
                report(getattr(check, "__name__", "check"), False, f"{type(e).__name__}: {e}")
    failed = [n for n, ok, _ in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
