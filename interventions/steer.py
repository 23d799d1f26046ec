"""Steering vectors in lm-eval's format (``lm_eval/models/hf_steered.py``), and a CAA-style vector fitted here.

lm-eval's ``steered`` model reads ``{hookpoint: {steering_vector, steering_coefficient, action, bias,
head_index}}`` (a ``.pt`` file; or a CSV naming sparse-autoencoder features, which lm-eval turns into that dict
with ``sparsify`` / ``sae_lens``). Hookpoints are module names relative to ``model.base_model`` (``layers.12`` for
Llama-like models, ``h.12`` for GPT-2). The actions, as lm-eval applies them to the hookpoint's output:

- ``add``:   ``acts + coefficient * vector`` (on one head's slice when ``head_index`` is set);
- ``clamp``: the component along ``vector / |vector|`` set to ``coefficient`` (after subtracting ``bias``).

``strength`` λ scales every action (0 = the unmitigated model, 1 = the file as lm-eval runs it): ``add`` adds
``λ * coefficient * vector``, ``clamp`` moves ``acts`` a fraction λ of the way to the clamped activations.

Without ``file``, ``fit`` builds a difference-of-means vector (Rimsky et al. 2024, CAA; here from mean-pooled
sentences): the mean residual-stream output of non-toxic minus toxic Jigsaw sentences at the chosen decoder
layers (default: the middle one), applied with ``add``. ``.pt`` files are read with ``torch.load(weights_only=True)``,
which accepts tensors and plain containers only (lm-eval's own loader unpickles anything).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..harness.core.errors import UsageError, did_you_mean
from .aura import DEFAULT_DATA, _coerce
from .base import Intervention, State
from .forward_hooks import hooked
from .responses import collect_responses
from .sentences import FitContext, fit_device, labelled_sentences, merged_config, state_metadata

ACTIONS = ("add", "clamp")
SUFFIXES = (".pt", ".pth", ".safetensors", ".csv")


class Steer(Intervention):
    """``steer``: lm-eval steering vectors (``file=``), or a CAA-style vector fitted from Jigsaw sentences."""

    name: ClassVar[str] = "steer"
    kind: ClassVar[str] = "activation"
    needs_fit: ClassVar[bool] = True
    apply_keys: ClassVar[tuple[str, ...]] = ("strength",)
    strength_key: ClassVar[str | None] = "strength"
    defaults: ClassVar[dict[str, Any]] = {
        "file": "",  # an lm-eval steering file (.pt/.pth, .safetensors, .csv); empty: fit a CAA vector
        "layers": "auto",  # fit only: decoder layer indices or hookpoints, comma-separated; auto = the middle one
        "coefficient": 1.0,  # fit only: the steering_coefficient written for the fitted vector
        "data": DEFAULT_DATA,
        "text_column": 0,
        "label_column": 1,
        "n_per_class": 128,  # as AurA and the transport methods: the same sentences
        "seq_len": 128,
        "skip_first_token": True,  # fit only: pool without the first token (attention-sink outliers)
        "strength": 1.0,  # λ, applied (never part of the fit): a multiplier on every action
    }

    def __init__(self, state: State | None = None, **config: Any) -> None:
        merged = merged_config(self.name, self.defaults, config)
        if merged["file"]:
            path = Path(str(merged["file"])).expanduser()
            if path.suffix not in SUFFIXES:
                raise did_you_mean(path.suffix or str(path), SUFFIXES, "steering file type")
            merged["file"] = str(path)
            fit_only = [k for k in ("layers", "coefficient", "data", "n_per_class", "skip_first_token")
                        if merged[k] != _coerce(k, self.defaults[k], self.defaults[k])]
            if fit_only:
                raise UsageError(f"steer {fit_only[0]}= is for a fitted vector; a steering file brings its own")
            # Identity is the vectors' content (the state hash), not where the file lies.
            state = state or read_steer_file(path)
        super().__init__(state=state, **merged)

    @classmethod
    def needs_state(cls, config: dict[str, Any]) -> bool:
        return not config.get("file")

    # -- learning ---------------------------------------------------------------------------------------------
    def fit(self, model: torch.nn.Module, tokenizer: Any, **context: Any) -> State:
        cfg, ctx = self.config, FitContext.of(context)
        hookpoints = resolve_layers(model, cfg["layers"])
        full = {hp: full_name(model, hp) for hp in hookpoints}
        texts, y, data_path = labelled_sentences(cfg, ctx.data_dir, ctx.seed)
        dev = fit_device(model, ctx.device)
        resp = collect_responses(model, tokenizer, texts, y, list(full.values()), batch_size=ctx.batch_size,
                                 seq_len=cfg["seq_len"], pooling="mean", device=dev, progress=ctx.progress,
                                 skip_first=cfg["skip_first_token"])
        tensors, entries = {}, {}
        for hp, name in full.items():
            z = resp.matrix(name).to(torch.float64)
            tensors[f"{hp}/steering_vector"] = (z[~y].mean(0) - z[y].mean(0)).float()
            entries[hp] = {"action": "add", "steering_coefficient": float(cfg["coefficient"]), "head_index": None}
        meta = state_metadata(self, model, ctx, data_path, y, method="steer", hookpoints=entries,
                              source="fit (difference of means, non-toxic - toxic)")
        return State(tensors=tensors, metadata=meta)

    # -- applying ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def attach(self, model: torch.nn.Module) -> Iterator[None]:
        cache = self.__dict__.setdefault("_hook_cache", weakref.WeakKeyDictionary())
        hooks = cache.get(model)
        if hooks is None:
            if self.state is None:
                raise UsageError("intervention 'steer' needs vectors: pass -a file=PATH (an lm-eval steering file) "
                                 "or fit one with `toxbench fit --intervention steer`")
            lam = float(self.config["strength"])
            hooks = cache[model] = {full_name(model, hp): _steer_hook(entry, lam)
                                    for hp, entry in steer_entries(self.state).items()} if lam else {}
        with hooked(model, hooks):
            yield


    # -- export -------------------------------------------------------------------------------------------------
    @classmethod
    def check_foldable(cls, config: dict[str, Any]) -> None:
        """What can be folded depends on the vectors' actions and the model: ``affine`` checks it once loaded."""

    def affine(self, model: torch.nn.Module | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each ``add`` vector on a layer's output, as a shift of the bias of the module whose output that layer
        adds to the residual stream last (its MLP's output projection): the same sum, so the export needs no hook.
        ``clamp`` (it depends on the activation) and per-head vectors are refused in one line."""
        if model is None or self.state is None:
            raise UsageError("steer: folding needs the model and the vectors (run it with hooks instead)")
        lam = float(self.config["strength"])
        out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for hp, entry in steer_entries(self.state).items():
            if entry["action"] != "add" or entry.get("head_index") is not None or entry.get("bias") is not None:
                raise UsageError(f"steer: the {entry['action']!r} vector at {hp!r} depends on the activation (or one "
                                 "head), which weights cannot express; export folds `add` vectors only (or run it "
                                 "with hooks)")
            target = residual_writer(model, full_name(model, hp))
            v = entry["steering_vector"].detach().float().reshape(-1) * float(entry["steering_coefficient"]) * lam
            out[target] = (torch.ones_like(v), v)
        return out


def residual_writer(model: torch.nn.Module, name: str) -> str:
    """The module whose output ``name``'s output ends with: itself when it is a projection, a decoder layer's MLP
    output projection when nothing (a post-norm, as in Gemma) comes between it and the residual add."""
    module = dict(model.named_modules())[name]
    if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
        return name
    mlp = getattr(module, "mlp", None)
    proj = next((p for p in ("down_proj", "c_proj") if mlp is not None and hasattr(mlp, p)), None)
    if proj is None or any("feedforward_layernorm" in n for n, _ in module.named_children()):
        raise UsageError(f"steer: cannot fold a vector on {name!r} ({type(module).__name__}): its MLP output passes "
                         "a norm (or no projection) before the residual add; run it with hooks instead")
    return f"{name}.mlp.{proj}"


# -- lm-eval's format ---------------------------------------------------------------------------------------------
def steer_entries(state: State) -> dict[str, dict[str, Any]]:
    """``{hookpoint: lm-eval entry}`` (tensors + action/coefficient/head_index) from a state."""
    out: dict[str, dict[str, Any]] = {}
    for hp, info in state.metadata.get("hookpoints", {}).items():
        vector = state.tensors.get(f"{hp}/steering_vector")
        if vector is None:
            raise UsageError(f"steering state has no vector for hookpoint {hp!r}")
        out[hp] = {**info, "steering_vector": vector, "bias": state.tensors.get(f"{hp}/bias")}
    if not out:
        raise UsageError("steering state holds no hookpoints")
    return out


def steer_state(config: dict[str, dict[str, Any]], source: str) -> State:
    """A state from lm-eval's steering dict, every entry checked."""
    if not isinstance(config, dict) or not config:
        raise UsageError(f"{source}: expected lm-eval's {{hookpoint: {{steering_vector, action, ...}}}} dict")
    tensors, entries = {}, {}
    for hp, info in config.items():
        if not isinstance(info, dict) or not isinstance(info.get("steering_vector"), torch.Tensor):
            raise UsageError(f"{source}: hookpoint {hp!r} has no steering_vector tensor")
        action = info.get("action", "add")
        if action not in ACTIONS:
            raise did_you_mean(str(action), ACTIONS, f"steering action of {hp!r} in {source}")
        if action == "add" and info.get("bias") is not None:
            raise UsageError(f"{source}: hookpoint {hp!r}: bias is not supported for the add action (as lm-eval)")
        tensors[f"{hp}/steering_vector"] = info["steering_vector"].detach().float().reshape(-1)
        if info.get("bias") is not None:
            tensors[f"{hp}/bias"] = info["bias"].detach().float().reshape(-1)
        head = info.get("head_index")
        entries[hp] = {"action": action, "steering_coefficient": float(info.get("steering_coefficient", 1.0)),
                       "head_index": None if head is None else int(head)}
    return State(tensors=tensors, metadata={"method": "steer", "hookpoints": entries})


def read_steer_file(path: Path) -> State:
    """An lm-eval steering file as a state: ``.pt``/``.pth`` (tensors and plain containers only), ``.safetensors``
    (``HOOKPOINT/steering_vector`` tensors + ``hookpoints`` metadata, as toxbench writes), ``.csv`` (lm-eval derives
    the vectors from sparse autoencoders, which needs ``sparsify`` or ``sae_lens`` and their downloads)."""
    if not path.is_file():
        raise UsageError(f"steering file {str(path)!r} not found")
    if path.suffix == ".safetensors":
        state = State.load(path)
        steer_entries(state)
        return state
    if path.suffix == ".csv":
        from lm_eval.models.hf_steered import SteeredModel

        try:
            config = SteeredModel.derive_steer_config(str(path))
        except ImportError as e:
            raise UsageError(f"steering CSV {path.name!r} names sparse-autoencoder features; lm-eval derives them "
                             f"with {e.name or 'sparsify/sae_lens'} (pip install it; it downloads the SAEs)") from None
        except KeyError as e:
            raise UsageError(f"steering CSV {path.name!r} lacks column {e.args[0]!r} (lm-eval's columns: loader, "
                             "action, sparse_model, hookpoint, feature_index, steering_coefficient)") from None
        return steer_state(config, str(path))
    try:
        config = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, a torn zip...: unusable either way
        reason = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise UsageError(f"steering file {path.name!r} is not a tensors-only torch file ({reason})") from None
    return steer_state(config, str(path))


def _steer_hook(entry: dict[str, Any], lam: float) -> Any:
    """A forward hook applying one lm-eval entry at strength ``lam`` (λ = 1: lm-eval's arithmetic exactly)."""
    cache: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}
    action, coef, head = entry["action"], float(entry["steering_coefficient"]), entry.get("head_index")

    def edit(acts: torch.Tensor) -> torch.Tensor:
        key = (acts.dtype, acts.device)
        if key not in cache:
            v = entry["steering_vector"].to(acts.device).to(acts.dtype)
            b = entry["bias"].to(acts.device).to(acts.dtype) if entry.get("bias") is not None else None
            cache[key] = (v * (coef * lam) if action == "add" else v / torch.norm(v), b)
        v, bias = cache[key]
        if action == "add":
            if head is None:
                return acts + v
            acts = acts.clone()
            acts[:, :, head, :] = acts[:, :, head, :] + v
            return acts
        x = acts - bias if bias is not None else acts
        if head is None:
            clamped = x + v * (coef - (x * v).sum(-1, keepdim=True))
        else:
            clamped = x.clone()
            clamped[:, :, head, :] = x[:, :, head, :] + v * (coef - (x[:, :, head, :] * v).sum(-1, keepdim=True))
        if bias is not None:
            clamped = clamped + bias
        return clamped if lam == 1.0 else acts + lam * (clamped - acts)

    def hook(module: torch.nn.Module, inputs: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (edit(output[0]), *output[1:])
        return edit(output)

    return hook


# -- hookpoints ---------------------------------------------------------------------------------------------------
def _base_prefix(model: torch.nn.Module) -> str:
    """The name of ``model.base_model`` inside ``model`` ('' when the model is its own base), lm-eval's root."""
    base = getattr(model, "base_model", model)
    for name, module in model.named_modules():
        if module is base:
            return name
    return ""


def full_name(model: torch.nn.Module, hookpoint: str) -> str:
    """A hookpoint (relative to ``base_model``, as lm-eval resolves it) as a module name of ``model``."""
    prefix = _base_prefix(model)
    name = f"{prefix}.{hookpoint}" if prefix and hookpoint else (hookpoint or prefix)
    modules = dict(model.named_modules())
    if name not in modules:
        base = dict(getattr(model, "base_model", model).named_modules())
        raise did_you_mean(hookpoint, [n for n in base if n], "steering hookpoint (relative to the base model)")
    return name


def decoder_layers(model: torch.nn.Module) -> str:
    """The hookpoint of the decoder-layer list: the base model's ModuleList as long as ``num_hidden_layers``."""
    base = getattr(model, "base_model", model)
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) and (n is None or len(module) == n):
            return name
    raise UsageError("cannot find this model's decoder layers; pass -a layers=HOOKPOINT (e.g. layers.12)")


def resolve_layers(model: torch.nn.Module, layers: Any) -> list[str]:
    """``auto`` (the middle decoder layer), layer indices, or hookpoints -> hookpoints."""
    spec = str(layers).strip()
    parts = [p.strip() for p in spec.split(",") if p.strip()] if spec not in ("", "auto") else []
    out = []
    if not parts or any(p.lstrip("-").isdigit() for p in parts):
        stack = decoder_layers(model)
        n = len(dict(getattr(model, "base_model", model).named_modules())[stack])
        if not parts:
            return [f"{stack}.{n // 2}"]
    for part in parts:
        if part.lstrip("-").isdigit():
            i = int(part) + (n if int(part) < 0 else 0)
            if not 0 <= i < n:
                raise UsageError(f"steer layer {part} is invalid: the model has {n} decoder layers (0..{n - 1})")
            part = f"{stack}.{i}"
        out.append(part)
    for hp in out:
        full_name(model, hp)
    return out
