"""WikiText perplexity on the embedded SmolLM2: peak memory and time, toxbench's rolling path vs lm-eval's HFLM.

Each measurement runs in its own process (peak RSS is per process), on the first N WikiText-2 test articles at
the model's own window (8,192 tokens) unless --max-length is given:

- ``toxbench``: ``HookedLM.loglikelihood_rolling`` (one window at a time, output head in chunks);
- ``lm-eval``: ``HFLM.loglikelihood_rolling`` at --lmeval-batch (16 is toxbench's default batch size; it needs
  ~13 GB at the full window, so the default here is 2 to stay on a small machine).

Prints peak RSS, the increase over the loaded model, seconds, and the two log-likelihoods' largest relative
difference. The goal: <= 2 GB peak for WikiText on SmolLM2 at any --limit.

    python benchmarks/bench_perplexity_memory.py --limit 4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(which: str, limit: int, max_length: int | None, batch: int, dtype: str) -> None:
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from toxbench.harness.run.adapter import HookedLM
    from toxbench.harness.core.models import load_model
    from toxbench.harness.core.paths import data_dir
    from toxbench.tasks.datafiles import wikitext_documents

    torch.set_num_threads(1)
    loaded = load_model("smollm2-135m", dtype=getattr(torch, dtype), device="cpu")
    docs = wikitext_documents(data_dir() / "wikitext/wikitext-2-raw/wiki.test.raw")[:limit]
    reqs = [Instance("loglikelihood_rolling", {}, (d["page"],), i) for i, d in enumerate(docs)]
    base = _rss_mb()
    kw = {"max_length": max_length} if max_length else {}
    t = time.perf_counter()
    if which == "toxbench":
        lm = HookedLM(loaded.model, tokenizer=loaded.tokenizer, batch_size=batch, progress=False, **kw)
        out = lm.loglikelihood_rolling(reqs)
    else:
        lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=batch, **kw)
        out = lm.loglikelihood_rolling(reqs, disable_tqdm=True)
    secs = time.perf_counter() - t
    print(json.dumps({"peak_mb": _rss_mb(), "model_mb": base, "s": secs, "ll": out, "window": lm.max_length}))


def run(which: str, a: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", which, "--limit", str(a.limit), "--dtype", a.dtype,
           "--lmeval-batch", str(a.lmeval_batch)] + (["--max-length", str(a.max_length)] if a.max_length else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=4, help="WikiText-2 test articles")
    ap.add_argument("--max-length", type=int, default=None, help="window (default: the model's, 8,192)")
    ap.add_argument("--lmeval-batch", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--skip-lmeval", action="store_true")
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.limit, a.max_length, a.lmeval_batch if a.child == "lm-eval" else 16, a.dtype)
        return
    from toxbench.harness.core.hardware import kernel_set

    print(f"CPU kernels: {kernel_set('cpu')}; SmolLM2-135M {a.dtype}, 1 thread, {a.limit} WikiText-2 articles")
    ours = run("toxbench", a)
    print(f"toxbench rolling (window {ours['window']}): peak {ours['peak_mb']:.0f} MB "
          f"(+{ours['peak_mb'] - ours['model_mb']:.0f} over the loaded model), {ours['s']:.1f} s")
    if a.skip_lmeval:
        return
    ref = run("lm-eval", a)
    diff = max(abs(x - y) / abs(y) for x, y in zip(ours["ll"], ref["ll"]))
    print(f"lm-eval HFLM batch {a.lmeval_batch}: peak {ref['peak_mb']:.0f} MB "
          f"(+{ref['peak_mb'] - ref['model_mb']:.0f}), {ref['s']:.1f} s")
    print(f"ratio peak lm-eval/toxbench: {ref['peak_mb'] / ours['peak_mb']:.2f}x; "
          f"time: {ref['s'] / ours['s']:.2f}x; log-likelihood max rel. difference {diff:.2e}")


if __name__ == "__main__":
    main()
