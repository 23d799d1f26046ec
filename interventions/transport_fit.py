"""Estimating Activation Transport maps (Rodriguez et al., ICLR 2025; code: apple/ml-act).

Per unit (independently), the responses of toxic sentences (the source) are transported onto those of non-toxic
sentences (the target). ml-act's ``act/hooks/transport.py``:

- ``linear``  (``linear_ot``): 1-D optimal transport between two equal-size samples pairs them by rank (sort both,
  ``solve_ot_1d``); an affine map ``a -> omega a + beta`` is fitted to the sorted pairs by least squares
  (``LinearProj.optimize``);
- ``mean``    (``mean_ot`` = ``OnlyMeanHook``): ``omega = 1``, ``beta = mean(target) - mean(source)``, for units
  whose standard deviation exceeds ``std_eps`` in both classes (the others are left alone).

The map is applied only where the activation lies strictly inside a quantile range of the source responses
(``quantiles_src``: ``q_0_100`` = the range of the toxic responses; ``q_all`` = everywhere), with strength
``lam``: ``a <- (1 - lam) a + lam (omega a + beta)``.

Estimation is ``incremental`` (ml-act's ``incr``: each module's map is fitted on responses of the model whose
earlier modules are already transported) or ``atonce`` (every map from the unmodified model's responses).
Incremental runs in *one* forward pass: at each module the forward passes of all batches meet, the module's map is
fitted from every sentence's responses, applied, and the batches run on, so module ``l`` sees modules ``< l``
transported, exactly as ml-act's layer-by-layer loop (which recomputes the prefix of the network once per module).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..harness.core.errors import UsageError
from .forward_hooks import hooked
from .responses import _StopForward, pad_batch, pool_tokens, tokenize, without_first_token

METHODS = ("linear", "mean")
MODES = ("incremental", "atonce")
#: Incremental fitting runs one thread per batch; more sentences make bigger batches, not more threads.
MAX_THREADS = 64
_QUANTILES = re.compile(r"^q_(\d+(?:\.\d+)?)_(\d+(?:\.\d+)?)$")


def parse_quantiles(name: str) -> tuple[float, float] | None:
    """ml-act's ``quantiles_src`` names: ``q_all`` (no range mask, None) or ``q_LO_HI`` in percent."""
    if name == "q_all":
        return None
    m = _QUANTILES.match(str(name))
    if not m or not 0 <= float(m.group(1)) < float(m.group(2)) <= 100:
        raise UsageError(f"quantiles {name!r} is invalid: use q_all (everywhere) or q_LO_HI with "
                         "0 <= LO < HI <= 100, e.g. q_0_100 (the toxic responses' range, ml-act's default)")
    return float(m.group(1)) / 100, float(m.group(2)) / 100


def balanced(labels: torch.Tensor) -> torch.Tensor:
    """Row indices with as many toxic as non-toxic rows (the first of each class, in arrival order): 1-D OT by
    sorting needs two samples of the same size."""
    y = labels.reshape(-1).bool()
    pos, neg = torch.nonzero(y).flatten(), torch.nonzero(~y).flatten()
    n = min(len(pos), len(neg))
    if n < 2:
        raise UsageError(f"transport needs at least 2 sentences of each class, got {len(pos)} toxic and "
                         f"{len(neg)} non-toxic")
    return torch.cat([pos[:n], neg[:n]])


def sorted_pairs(source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D optimal transport per unit between equal-size samples ``[n, units]``: both sorted along the samples."""
    if source.shape != target.shape:
        raise UsageError(f"transport pairs samples of equal size, got {tuple(source.shape)} and "
                         f"{tuple(target.shape)}")
    return torch.sort(source, dim=0).values, torch.sort(target, dim=0).values


def least_squares(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-unit ``y ~ omega x + beta`` (columns independent), in float64. A unit whose source does not vary gets
    the mean shift (omega 1), where ml-act adds 1e-8 noise to x and gets an arbitrary slope."""
    x, y = x.to(torch.float64), y.to(torch.float64)
    mx, my = x.mean(0), y.mean(0)
    xb, yb = x - mx, y - my
    var = (xb * xb).sum(0)
    flat = var <= 1e-12 * x.shape[0]
    omega = torch.where(flat, torch.ones_like(var), (xb * yb).sum(0) / torch.where(flat, 1.0, var))
    beta = my - omega * mx
    return omega, beta


def fit_map(responses: torch.Tensor, labels: torch.Tensor, method: str, quantiles: str,
            std_eps: float = 1e-4) -> dict[str, torch.Tensor]:
    """One module's map from pooled responses ``[sentences, units]`` (labels: toxic = source): ``omega``,
    ``beta`` and, under a range mask, the source quantiles ``lo`` / ``hi`` (float32)."""
    rows = balanced(labels)
    z = responses[rows].to(torch.float64)
    y = labels.reshape(-1).bool()[rows]
    src, dst = z[y], z[~y]
    if method == "linear":
        omega, beta = least_squares(*sorted_pairs(src, dst))
    elif method == "mean":
        keep = (src.std(0) > std_eps) & (dst.std(0) > std_eps)
        omega = torch.ones(z.shape[1], dtype=torch.float64)
        beta = torch.where(keep, dst.mean(0) - src.mean(0), torch.zeros_like(omega))
    else:
        raise UsageError(f"transport method {method!r} is invalid: use one of {', '.join(METHODS)}")
    out = {"omega": omega.float(), "beta": beta.float()}
    q = parse_quantiles(quantiles)
    if q is not None:  # the 0% and 100% quantiles are the extremes (torch.quantile sorts again for them)
        out["lo"] = (src.amin(0) if q[0] == 0 else torch.quantile(src, q[0], dim=0)).float()
        out["hi"] = (src.amax(0) if q[1] == 1 else torch.quantile(src, q[1], dim=0)).float()
    return out


def transport(z: torch.Tensor, m: dict[str, torch.Tensor], lam: float) -> torch.Tensor:
    """Apply a fitted map to activations ``[..., units]`` (tensors of ``m`` already on z's device/dtype)."""
    return transport_prepared(z, prepare_map(m, lam))


def prepare_map(m: dict[str, torch.Tensor], lam: float) -> dict[str, torch.Tensor]:
    """``(1 - lam) z + lam (omega z + beta)`` as one multiply-add, ``scale * z + shift`` (the range kept)."""
    out = {"scale": 1 + lam * (m["omega"] - 1), "shift": lam * m["beta"]}
    return {**out, **{k: m[k] for k in ("lo", "hi") if k in m}}


def transport_prepared(z: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    moved = torch.addcmul(p["shift"], z, p["scale"])
    if "lo" not in p:
        return moved
    return torch.where((z > p["lo"]) & (z < p["hi"]), moved, z)


def transport_hook(m: dict[str, torch.Tensor], lam: float) -> Any:
    """A forward hook applying ``transport`` to a module's output, its tensors cast once per dtype/device."""
    prepared = prepare_map(m, lam)
    cache: dict[tuple, dict[str, torch.Tensor]] = {}

    def hook(module: torch.nn.Module, inputs: Any, output: Any) -> Any:
        out = output[0] if isinstance(output, tuple) else output
        key = (out.dtype, out.device)
        cast = cache.get(key)
        if cast is None:
            cast = cache[key] = {k: v.to(dtype=out.dtype, device=out.device) for k, v in prepared.items()}
        moved = transport_prepared(out, cast)
        return (moved, *output[1:]) if isinstance(output, tuple) else moved

    return hook


def fit_incremental(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], labels: torch.Tensor,
                    names: Sequence[str], *, seq_len: int, pooling: str, method: str, quantiles: str,
                    std_eps: float, device: torch.device, batch_size: int,
                    skip_first: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    """Every module's map in one forward pass (see the module docstring).

    The sentences go in length-sorted batches (little padding, as AurA's responses), one thread per batch. At each
    module every thread pools its batch's responses and waits at a barrier; once all have arrived the map is
    fitted from all sentences, and every thread applies it and runs on to the next module. The result does not
    depend on thread scheduling: each map is fitted once, from the complete set of responses.
    """
    ids = tokenize(tokenizer, texts, seq_len)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    size = max(batch_size, -(-len(ids) // MAX_THREADS))
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    fit = _IncrementalFit(model, names, len(ids), len(batches),
                          lambda z: fit_map(z, labels, method, quantiles, std_eps), pooling, skip_first)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    was_training = model.training
    model.eval()
    try:
        with hooked(model, {n: fit.hook(n) for n in names}):
            threads = [threading.Thread(target=fit.run, args=(model, rows, *pad_batch([ids[i] for i in rows], pad_id),
                                                                device), daemon=True) for rows in batches]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        model.train(was_training)
    if fit.errors:
        raise fit.errors[0]
    missing = [n for n in names if n not in fit.maps]
    if missing:
        raise UsageError(f"module {missing[0]!r} never ran during the forward pass; choose another module")
    return fit.maps


class _IncrementalFit:
    """The batch threads' meeting point at each hooked module (``fit_incremental``)."""

    def __init__(self, model: torch.nn.Module, names: Sequence[str], n: int, n_batches: int,
                 fit_one: Callable[[torch.Tensor], dict[str, torch.Tensor]], pooling: str, skip_first: bool) -> None:
        order = {name: i for i, (name, _) in enumerate(model.named_modules())}
        self.last = max(names, key=order.__getitem__)
        self.n, self.fit_one, self.pooling, self.skip_first = n, fit_one, pooling, skip_first
        self.pooled: dict[str, torch.Tensor] = {}
        self.maps: dict[str, dict[str, torch.Tensor]] = {}
        self.errors: list[BaseException] = []
        self.local = threading.local()
        self.lock = threading.Lock()
        self.current = ""
        self.barrier = threading.Barrier(n_batches, action=self._fit_current)

    def _fit_current(self) -> None:  # run by one thread, once every batch has reached the module
        self.maps[self.current] = self.fit_one(self.pooled[self.current])

    def hook(self, name: str) -> Any:
        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> Any:
            out = output[0] if isinstance(output, tuple) else output
            if out.dim() != 3 or out.shape[:2] != self.local.mask.shape:
                raise UsageError(f"module {name!r} outputs shape {tuple(out.shape)}, not [batch, tokens, units]; "
                                 "choose modules whose output is per token")
            rows = pool_tokens(out, self.local.mask, self.pooling).to(device="cpu", dtype=torch.float32)
            with self.lock:
                if name not in self.pooled:
                    self.pooled[name] = torch.zeros((self.n, out.shape[-1]), dtype=torch.float32)
                    self.current = name
                self.pooled[name][self.local.rows] = rows
            self.barrier.wait()
            if name == self.last:
                raise _StopForward
            moved = transport_prepared(out, {k: v.to(out.device, out.dtype)
                                             for k, v in prepare_map(self.maps[name], 1.0).items()})
            return (moved, *output[1:]) if isinstance(output, tuple) else moved

        return hook

    def run(self, model: torch.nn.Module, rows: list[int], input_ids: torch.Tensor, mask: torch.Tensor,
            device: torch.device) -> None:
        self.local.rows = torch.tensor(rows)
        self.local.mask = without_first_token(mask) if self.skip_first else mask.bool()
        try:
            with torch.inference_mode():
                model(input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False)
        except (_StopForward, threading.BrokenBarrierError):
            pass  # the end of the useful network; or another batch failed, and its error is the one reported
        except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
            self.errors.append(e)
            self.barrier.abort()
