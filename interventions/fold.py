"""Fold per-unit output scales into the weights, and export the result as a plain Hugging Face checkpoint.

Scaling output unit ``j`` of ``y = x W^T + b`` (``nn.Linear``) by ``alpha_j`` is the same as scaling row ``j`` of
``W`` and entry ``j`` of ``b``; GPT-2's ``Conv1D`` computes ``y = x W + b`` with ``W`` stored ``[in, out]``, so
there it is column ``j``. The exported checkpoint then runs the intervention with no hook and no toxbench:
any loader (``AutoModelForCausalLM``, lm-eval's ``hf`` model, vLLM) gives the intervened model at full speed.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..harness.core.errors import UsageError, did_you_mean


def _is_conv1d(module: torch.nn.Module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def fold_scales(model: torch.nn.Module, scales: dict[str, torch.Tensor]) -> None:
    """Multiply each module's output units by ``scales[name]``, in the weights, in place."""
    modules = dict(model.named_modules())
    owners: dict[int, list[str]] = {}
    for pname, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(p.data_ptr(), []).append(pname)
    for name, alpha in scales.items():
        mod = modules.get(name)
        if mod is None:
            raise did_you_mean(name, [n for n in modules if n], "module to fold into")
        if isinstance(mod, torch.nn.Linear):
            axis, width = 0, mod.out_features
        elif _is_conv1d(mod):
            axis, width = 1, mod.nf
        else:
            raise UsageError(
                f"cannot fold into {name!r} ({type(mod).__name__}); folding supports Linear and GPT-2 Conv1D "
                "outputs - pick such modules or run the intervention with hooks instead of exporting"
            )
        alpha = alpha.detach().reshape(-1).to(torch.float32)
        if alpha.numel() != width:
            raise UsageError(f"{alpha.numel()} scales for {name!r}, which has {width} output units")
        shared = [o for o in owners.get(mod.weight.data_ptr(), []) if not o.startswith(f"{name}.")]
        if shared:
            raise UsageError(f"cannot fold into {name!r}: its weight is tied to {shared[0]!r}")
        with torch.no_grad():
            w = mod.weight
            shape = (-1, 1) if axis == 0 else (1, -1)
            w.copy_((w.float() * alpha.to(w.device).reshape(shape)).to(w.dtype))
            if mod.bias is not None:
                b = mod.bias
                b.copy_((b.float() * alpha.to(b.device)).to(b.dtype))


def folding_scales(intervention: Any) -> dict[str, torch.Tensor]:
    """The output scales of an intervention (or a composition); anything that cannot be folded is an error."""
    scales: dict[str, torch.Tensor] = {}
    for part in getattr(intervention, "parts", [intervention]):
        if getattr(part, "kind", "none") == "none":
            continue
        if not hasattr(part, "scales"):
            raise UsageError(
                f"intervention {part.name!r} ({part.kind} space) cannot be folded into weights; "
                "export supports aura, det0 and damp"
            )
        for name, a in part.scales().items():
            scales[name] = scales[name] * a if name in scales else a.clone()
    return scales


def export_folded(
    model: torch.nn.Module,
    tokenizer: Any,
    intervention: Any,
    out_dir: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    inplace: bool = False,
    overwrite: bool = False,
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` with ``intervention`` folded in to ``out_dir`` (safetensors, config, tokenizer).

    Written to a temporary sibling folder and renamed into place, so ``out_dir`` is either complete or absent.
    ``inplace=False`` folds into a copy and leaves ``model`` untouched.
    """
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UsageError(f"export dir {str(out)!r} exists and is not empty; pass --force or choose another --out")
    scales = folding_scales(intervention)
    target = model if inplace else copy.deepcopy(model)
    fold_scales(target, scales)
    if dtype is not None:
        target = target.to(dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        target.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        if not any(tmp.glob("*.safetensors")):
            raise UsageError("the model did not save as safetensors; cannot export")
        _relax_permissions(tmp)
        spec = intervention.spec() if hasattr(intervention, "spec") else {"name": str(intervention)}
        info = {"intervention": spec, "folded_modules": sorted(scales), **(extra_metadata or {})}
        (tmp / "toxbench_export.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _relax_permissions(folder: Path) -> None:
    """Temp-file based writers leave 0600 files; an exported checkpoint is meant to be shared (umask applies)."""
    mask = os.umask(0)
    os.umask(mask)
    for f in folder.iterdir():
        if f.is_file():
            f.chmod(0o666 & ~mask)
