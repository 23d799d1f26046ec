"""Fold per-unit output maps (scales and shifts) into the weights, and export a plain Hugging Face checkpoint.

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


Affine = tuple[torch.Tensor, torch.Tensor | None]  # output <- scale * output + shift (None: no shift)


def fold_scales(model: torch.nn.Module, scales: dict[str, torch.Tensor]) -> None:
    """Multiply each module's output units by ``scales[name]``, in the weights, in place."""
    fold_affine(model, {name: (alpha, None) for name, alpha in scales.items()})


def fold_affine(model: torch.nn.Module, maps: dict[str, Affine]) -> None:
    """Write ``output <- scale * output + shift`` per output unit into the weights, in place.

    A Linear / Conv1D scales its weight's output rows (Conv1D: columns) and its bias, then adds the shift to the
    bias; a LayerNorm scales its weight and bias likewise. A shift needs a bias: Llama-like MLP projections
    without one get zero biases in every MLP projection and ``config.mlp_bias = True``, which every loader
    (transformers, vLLM) then builds; any other module without a bias (an RMSNorm) is an error.
    """
    modules = dict(model.named_modules())
    owners: dict[int, list[str]] = {}
    for pname, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(p.data_ptr(), []).append(pname)
    plan = [(name, modules.get(name), *_checked(name, modules.get(name), modules, scale, shift, owners))
            for name, (scale, shift) in maps.items()]
    if any(shift is not None and getattr(mod, "bias", None) is None for _, mod, _, _, shift in plan):
        _add_mlp_biases(model, [name for name, mod, _, _, shift in plan
                                if shift is not None and getattr(mod, "bias", None) is None])
    with torch.no_grad():
        for _, mod, axis, scale, shift in plan:
            w = mod.weight
            shape = (-1, 1) if axis == 0 and w.dim() == 2 else (1, -1) if w.dim() == 2 else (-1,)
            w.copy_((w.float() * scale.to(w.device).reshape(shape)).to(w.dtype))
            if mod.bias is not None:
                b = mod.bias
                new = b.float() * scale.to(b.device)
                if shift is not None:
                    new = new + shift.to(b.device)
                b.copy_(new.to(b.dtype))


def _checked(name: str, mod: torch.nn.Module | None, modules: dict, scale: torch.Tensor,
             shift: torch.Tensor | None, owners: dict[int, list[str]]) -> tuple[int, torch.Tensor, torch.Tensor | None]:
    """(weight axis of the output units, scale, shift) as float32 vectors, after checking the module can take them."""
    if mod is None:
        raise did_you_mean(name, [n for n in modules if n], "module to fold into")
    if isinstance(mod, torch.nn.Linear):
        axis, width = 0, mod.out_features
    elif _is_conv1d(mod):
        axis, width = 1, mod.nf
    elif isinstance(mod, torch.nn.LayerNorm) and mod.weight is not None:
        axis, width = 0, mod.weight.numel()
    else:
        raise UsageError(
            f"cannot fold into {name!r} ({type(mod).__name__}); folding supports Linear, GPT-2 Conv1D and "
            "LayerNorm outputs - pick such modules or run the intervention with hooks instead of exporting"
        )
    scale = scale.detach().reshape(-1).to(torch.float32)
    shift = None if shift is None or not bool(shift.any()) else shift.detach().reshape(-1).to(torch.float32)
    if scale.numel() != width or (shift is not None and shift.numel() != width):
        raise UsageError(f"{scale.numel()} scales for {name!r}, which has {width} output units")
    shared = [o for o in owners.get(mod.weight.data_ptr(), []) if not o.startswith(f"{name}.")]
    if shared:
        raise UsageError(f"cannot fold into {name!r}: its weight is tied to {shared[0]!r}")
    if shift is not None and getattr(mod, "bias", None) is None and not isinstance(mod, torch.nn.Linear):
        raise UsageError(f"cannot fold a shift into {name!r} ({type(mod).__name__}): it has no bias")
    return axis, scale, shift


def _add_mlp_biases(model: torch.nn.Module, names: list[str]) -> None:
    """Zero biases for every MLP projection, and ``config.mlp_bias = True`` (Llama-like configs only)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "mlp_bias") or any(".mlp." not in n for n in names):
        raise UsageError(f"cannot fold a shift into {names[0]!r}: it has no bias, and only Llama-like MLP "
                         "projections (config.mlp_bias) can be given one")
    for name, mod in model.named_modules():
        if ".mlp." in name and isinstance(mod, torch.nn.Linear) and mod.bias is None:
            w = mod.weight
            mod.bias = torch.nn.Parameter(torch.zeros(mod.out_features, dtype=w.dtype, device=w.device))
    config.mlp_bias = True


def check_foldable(spec: str, configs: list[dict[str, Any]]) -> None:
    """Before anything loads: every part of ``spec`` can be folded under its config (``check_args``' configs)."""
    from . import INTERVENTIONS, split_names

    for name, cfg in zip(split_names(spec), configs):
        cls = INTERVENTIONS.get(name)
        if cls.kind == "none":
            continue
        check = getattr(cls, "check_foldable", None)
        if check is None:
            raise UsageError(f"intervention {name!r} ({cls.kind} space) cannot be folded into weights; "
                             f"export supports {FOLDABLE}")
        check(cfg)


FOLDABLE = ("aura, det0, damp, mean-act, linear-act with quantiles=q_all, and steer's `add` vectors on layers whose "
            "MLP output joins the residual stream directly (GPT-2, Llama-like)")


def folding_maps(intervention: Any, model: torch.nn.Module | None = None) -> dict[str, Affine]:
    """The per-unit affine maps of an intervention (or a composition, applied in order) on ``model`` (the maps of a
    steering vector depend on where its layer's output comes from); anything that cannot be folded is an error."""
    maps: dict[str, Affine] = {}
    for part in getattr(intervention, "parts", [intervention]):
        if getattr(part, "kind", "none") == "none":
            continue
        if hasattr(part, "affine"):
            new = part.affine(model)
        elif hasattr(part, "scales"):
            new = {name: (a, None) for name, a in part.scales().items()}
        else:
            raise UsageError(f"intervention {part.name!r} ({part.kind} space) cannot be folded into weights; "
                             f"export supports {FOLDABLE}")
        for name, (s2, b2) in new.items():
            if name not in maps:
                maps[name] = (s2.clone(), None if b2 is None else b2.clone())
                continue
            s1, b1 = maps[name]  # the later part sees the earlier part's output: s2 (s1 x + b1) + b2
            shift = None if b1 is None and b2 is None else (0 if b1 is None else s2 * b1) + (0 if b2 is None else b2)
            maps[name] = (s2 * s1, shift)
    return maps


def folding_scales(intervention: Any) -> dict[str, torch.Tensor]:
    """The output scales of an intervention that only scales (AurA, Det0, Damp, and their compositions)."""
    maps = folding_maps(intervention)
    shifted = [n for n, (_, b) in maps.items() if b is not None]
    if shifted:
        raise UsageError(f"the intervention also shifts {shifted[0]!r}; fold it with fold_affine")
    return {n: s for n, (s, _) in maps.items()}


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
    maps = folding_maps(intervention, model)
    target = model if inplace else copy.deepcopy(model)
    fold_affine(target, maps)
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
        info = {"intervention": spec, "folded_modules": sorted(maps), **(extra_metadata or {})}
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
