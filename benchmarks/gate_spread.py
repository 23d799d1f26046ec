"""How far the CI gate's metrics move across kernel sets, beside how far AurA moves them.

Runs suites/smoke.yaml once per kernel set (each in its own process, since torch reads the kernel caps at start-up)
and prints, per gated metric, the spread across kernel sets (max - min) next to |aura - none|. A tolerance must sit
above the spread (the gate holds on any CPU) and below the effect (switching AurA off fails the gate).

    python benchmarks/gate_spread.py [--out /tmp/gate_spread] [--sets native,avx2,default] [--dtypes float32,bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNEL_SETS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}


def run_set(name: str, dtype: str, out: Path) -> Path:
    runs = out / f"{name}-{dtype}"
    env = {**os.environ, **KERNEL_SETS[name]}
    cmd = [sys.executable, "-m", "toxbench.harness.cli", "suite", str(ROOT / "suites" / "smoke.yaml"),
           "--set", f"output_dir={runs}", "--set", f"dtype={dtype}", "--out", str(runs / "lb.md"), "--no-plots"]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return runs


def metrics(runs: Path) -> dict[tuple[str, str, str], float]:
    out = {}
    for f in runs.glob("*/results.json"):
        res = json.loads(f.read_text())
        iv = res["spec"]["intervention"]
        for task, t in res["tasks"].items():
            for m, v in t["metrics"].items():
                if isinstance(v.get("value"), (int, float)):
                    out[(iv, task, m)] = float(v["value"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/gate_spread")
    ap.add_argument("--sets", default="native,avx2,default")
    ap.add_argument("--dtypes", default="float32")
    a = ap.parse_args()
    out = Path(a.out)
    by_set = {}
    for dtype in a.dtypes.split(","):
        for name in a.sets.split(","):
            print(f"running smoke suite: kernels={name} dtype={dtype}", file=sys.stderr, flush=True)
            by_set[f"{name}-{dtype}"] = metrics(run_set(name, dtype, out))
    keys = sorted(set().union(*by_set.values()))
    print(f"{'task':26s} {'metric':40s} {'spread/none':>12s} {'spread/aura':>12s} {'|aura-none|':>12s}  "
          + "  ".join(f"{s:>14s}" for s in by_set))
    for iv_task_metric in sorted({(t, m) for _, t, m in keys}):
        task, metric = iv_task_metric
        vals = {iv: [s.get((iv, task, metric)) for s in by_set.values()] for iv in ("none", "aura")}
        spread = {iv: max(v) - min(v) if None not in v else float("nan") for iv, v in vals.items()}
        effects = [abs(a_ - n) for a_, n in zip(vals["aura"], vals["none"]) if a_ is not None and n is not None]
        shown = "  ".join(f"{v:14.6f}" if v is not None else f"{'-':>14s}" for v in vals["none"])
        print(f"{task:26s} {metric:40s} {spread['none']:12.2e} {spread['aura']:12.2e} "
              f"{min(effects) if effects else float('nan'):12.4f}  {shown}")
    (out / "spread.json").write_text(json.dumps({k: {"|".join(m): v for m, v in s.items()} for k, s in by_set.items()},
                                                indent=1))


if __name__ == "__main__":
    main()
