"""A 4-point AurA sweep against one point, on the embedded SmolLM2, side by side in one process tree.

Each measurement starts from an empty cache and output dir (so each fits AurA itself):
(a) ``toxbench sweep -i aura --strength 1`` (fit, `none`, one point);
(b) ``toxbench sweep -i aura --strength 0.25,0.5,0.75,1`` (fit, `none`, four points).
Prints both wall times, the ratio (goal: <= 4.3, i.e. the fit is amortized: a sweep never refits) and how many
AurA states each cache holds (1 each).

    python benchmarks/bench_sweep.py --limit 16 --k 5
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep(strengths: str, a: argparse.Namespace, root: Path) -> tuple[float, int]:
    cache, out = root / "cache", root / "runs"
    cmd = [str(Path(sys.executable).with_name("toxbench")), "sweep", "-i", "aura", "--strength", strengths, "-t",
           "rtp_challenging,wiki_sentences", "--limit", str(a.limit), "--k", str(a.k), "--dtype", a.dtype,
           "--threads", "1", "--cache-dir", str(cache), "-o", str(out)]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"sweep failed: {res.stderr.strip().splitlines()[-1]}")
    return time.perf_counter() - t, len(list((cache / "states").rglob("aura-*.safetensors")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args()
    from toxbench.harness.core.hardware import kernel_set
    from toxbench.harness.core.models import embedded_checkpoint

    embedded_checkpoint("smollm2-135m")  # the GGUF conversion is not part of either measurement
    print(f"CPU kernels: {kernel_set('cpu')}; SmolLM2 {a.dtype}, 1 thread, {a.limit} prompts x k={a.k} + "
          f"{a.limit} Wikipedia sentences per point")
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d4:
        one, states1 = sweep("1", a, Path(d1))
        four, states4 = sweep("0.25,0.5,0.75,1", a, Path(d4))
    print(f"one point (fit + none + 1): {one:.1f} s, {states1} fitted state(s)")
    print(f"four points (fit + none + 4): {four:.1f} s, {states4} fitted state(s)")
    print(f"ratio 4-point / 1-point: {four / one:.2f}x (goal <= 4.3x)")


if __name__ == "__main__":
    main()
