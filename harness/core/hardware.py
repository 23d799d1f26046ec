"""What this machine computes with: the kernel set torch will use and whether bf16 is native.

bf16 is only fast where the CPU has bf16 instructions (AVX512-BF16, AMX, Arm's BF16): elsewhere torch emulates it,
3-6x slower than fp32, and greedy text differs from fp32's. So ``dtype=auto`` means bf16 only on such CPUs (or a
CUDA device that supports it) and fp32 everywhere else. The kernel set is recorded with every run (env.json) and
every baseline, so a number that moved because the kernels changed is reported as such.

The environment variables that select kernels (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``,
``MKL_ENABLE_INSTRUCTIONS``) are honoured: with them a 2024 CPU behaves like an AVX2-only one, for tests and gates.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

import torch

from .errors import UsageError, did_you_mean

#: oneDNN ISA caps that still include native bf16 instructions.
_ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                     "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "ALL", "DEFAULT")
#: /proc/cpuinfo flags of native bf16 arithmetic (x86: AVX512-BF16, AMX; Arm: BF16 / SVE-BF16).
_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16", "svebf16")
#: Environment variables that select kernels; recorded with every kernel set.
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
                                  "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's /proc/cpuinfo fields (lower-case keys), read once; empty off Linux."""
    info = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def cpu_flags() -> frozenset[str]:
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("features") or "").split())


def cpu_model() -> str:
    info = _cpuinfo()
    return (info.get("model name") or info.get("cpu model") or info.get("hardware")
            or platform.processor() or platform.machine())


def aten_capability() -> str:
    """The vectorised kernel set ATen dispatches to (DEFAULT, AVX2, AVX512, ...; honours ATEN_CPU_CAPABILITY)."""
    return str(torch.backends.cpu.get_cpu_capability())


def cpu_native_bf16() -> bool:
    """True when this CPU, under the kernel caps set in the environment, computes bf16 natively."""
    if not (set(_BF16_FLAGS) & cpu_flags()):
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if isa and isa not in _ONEDNN_BF16_ISAS:
        return False
    mkl = os.environ.get("MKL_ENABLE_INSTRUCTIONS", "").strip().upper()
    if mkl and not mkl.startswith(("AVX512", "AVX10")):
        return False
    cap = aten_capability().upper()
    arm = platform.machine().lower() in ("aarch64", "arm64")
    return cap.startswith(("AVX512", "SVE")) or (arm and cap != "DEFAULT")


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} requested but CUDA is not available; valid here: cpu, auto")
    return device


def set_threads(threads: int | None) -> None:
    """CPU threads for this process (None: the libraries' choice); every command goes through here: torch's, and
    ``OMP_NUM_THREADS`` for OpenMP runtimes loaded later (the scorers' encoders read it when first loaded)."""
    if threads is not None:
        if threads < 1:
            raise UsageError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def auto_dtype(device: str) -> torch.dtype:
    """bf16 where it is native (CUDA with bf16 support, or a bf16 CPU), fp16 on older CUDA, fp32 elsewhere."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_native_bf16() else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def resolve_dtype(dtype: str | torch.dtype = "auto", device: str = "cpu") -> torch.dtype:
    """``auto``: bf16 where it is native, fp32 on CPUs that would emulate it; names as in DTYPES."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return auto_dtype(device)
    if dtype not in DTYPES:
        raise did_you_mean(str(dtype), [*DTYPES, "auto"], "dtype")
    return DTYPES[dtype]


def resolve_dtype_name(dtype: str, device: str = "auto") -> str:
    """The concrete dtype a run computes in (``auto`` resolved for ``device``), as recorded in its protocol."""
    # only `auto` depends on the device: an explicit dtype names itself on any device
    return dtype_name(resolve_dtype(dtype, resolve_device(device) if dtype == "auto" else device))


def kernel_set(device: str = "cpu") -> dict[str, Any]:
    """What a number computed here depends on besides the code: device, CPU, kernel set, kernel caps."""
    out: dict[str, Any] = {"device": device.split(":")[0]}
    if device.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        return out
    out.update(cpu=cpu_model(), aten=aten_capability(), native_bf16=cpu_native_bf16())
    out.update({k.lower(): os.environ[k] for k in KERNEL_ENV if os.environ.get(k)})
    return out
