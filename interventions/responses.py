"""Response collection: per-sentence, per-unit outputs of chosen modules, pooled over each sentence's tokens.

Forward hooks on the modules' outputs pool every unit over the sentence's real tokens (max, as AurA; or mean)
and write one value per (unit, sentence) into a preallocated buffer, so memory is O(sentences x units), never
O(tokens x units). Batches are length-sorted (little padding, the main speed-up on CPU), run under
``torch.inference_mode`` with the KV cache off, and the forward pass stops right after the last hooked module
(no final norm / LM head). Padding is excluded through the attention mask, whichever side it is on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..harness.core.defaults import DEFAULT_BATCH_SIZE
from ..harness.core.errors import UsageError, did_you_mean
from .forward_hooks import hooked

POOLINGS = ("max", "mean")


class _StopForward(Exception):
    """Raised after the last hooked module: the rest of the network is not needed."""


@dataclass
class Responses:
    """Pooled responses: ``per_module[name]`` is ``[units, sentences]`` (unit-major: fast AUROC rows)."""

    per_module: dict[str, torch.Tensor]
    labels: torch.Tensor  # [sentences] bool
    n_tokens: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    def matrix(self, name: str) -> torch.Tensor:
        """``[sentences, units]`` view of one module's responses (sklearn's orientation)."""
        return self.per_module[name].T

    @property
    def n_units(self) -> int:
        return sum(t.shape[0] for t in self.per_module.values())


def tokenize(tokenizer: Any, texts: Sequence[str], seq_len: int) -> list[list[int]]:
    """Token ids per text, truncated to ``seq_len`` (special tokens as the tokenizer adds them, like ml-aura)."""
    enc = tokenizer(list(texts), truncation=True, max_length=seq_len, padding=False)
    ids = [list(x) for x in enc["input_ids"]]
    empty = sum(1 for x in ids if not x)
    if empty:
        raise UsageError(f"{empty} of the sentences tokenize to nothing; drop empty texts from the data file")
    return ids


def pad_batch(seqs: Sequence[list[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token lists to a batch + attention mask, without touching the tokenizer (it is shared by the run)."""
    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, x in enumerate(seqs):
        if side == "right":
            ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        else:
            ids[i, width - len(x) :] = torch.tensor(x)
            mask[i, width - len(x) :] = 1
    return ids, mask


def without_first_token(mask: torch.Tensor) -> torch.Tensor:
    """The attention mask with each sentence's first real token left out (sentences of one token keep it): the
    first position carries the attention sink's massive activations, which would dominate a mean."""
    mask = mask.bool().clone()
    first = mask.int().argmax(dim=1)
    keep = mask.sum(dim=1) > 1
    mask[torch.arange(mask.shape[0])[keep], first[keep]] = False
    return mask


def pool_tokens(out: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """``[batch, tokens, units]`` -> ``[batch, units]``: the max or mean over each sentence's real tokens."""
    m = mask.to(out.device).bool().unsqueeze(-1)
    if pooling == "max":
        return out.masked_fill(~m, float("-inf")).amax(dim=1)
    return (out * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)


def _dist_rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def collect_responses(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int] | torch.Tensor,
    module_names: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seq_len: int = 128,
    pooling: str = "max",
    skip_first: bool = False,
    sort_by_length: bool = True,
    padding_side: str = "right",
    stop_early: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Responses:
    """Run ``texts`` through ``model`` and pool the outputs of ``module_names`` per sentence.

    ``skip_first``: pool without each sentence's first token (``without_first_token``).
    ``sort_by_length=False`` keeps arrival order (the benchmark's baseline); results are identical either way
    because every sentence's row is written back to its own index.
    """
    _check_settings(pooling, padding_side, module_names, batch_size)
    ids = tokenize(tokenizer, texts, seq_len)
    n = len(ids)
    y = torch.as_tensor(labels).reshape(-1).to(torch.bool)
    if y.numel() != n:
        raise UsageError(f"{n} texts but {y.numel()} labels")
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    dev = torch.device(device) if device is not None else next(model.parameters()).device

    order = sorted(range(n), key=lambda i: -len(ids[i])) if sort_by_length else list(range(n))
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    rank, world = _dist_rank_world()
    if world > 1 and len(batches) >= world:
        # Data parallel (`accelerate launch` / torchrun): each rank pools its share of the batches; every row
        # is written by exactly one rank and is zero elsewhere, so an all-reduce SUM rebuilds the exact matrix.
        batches = batches[rank::world]
    else:
        world = 1

    names = list(module_names)
    module_order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    last = max(names, key=module_order.__getitem__)
    pooler = _Pooler(n, pooling, last if stop_early else None)
    n_tokens = _forward_batches(model, pooler, names, ids, batches, pad_id, padding_side, dev, progress, skip_first)
    missing = [name for name in names if name not in pooler.buffers]
    if missing:
        raise UsageError(f"module {missing[0]!r} never ran during the forward pass; choose another module")
    if world > 1:
        n_tokens = _all_reduce(pooler.buffers, names, n_tokens, dev)
    return Responses(per_module={name: pooler.buffers[name] for name in names}, labels=y, n_tokens=n_tokens)


def _check_settings(pooling: str, padding_side: str, module_names: Sequence[str], batch_size: int) -> None:
    if pooling not in POOLINGS:
        raise did_you_mean(pooling, POOLINGS, "pooling")
    if padding_side not in ("left", "right"):
        raise UsageError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    if not module_names:
        raise UsageError("no modules to collect responses from")
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, not {batch_size}")


class _Pooler:
    """Forward hooks that pool each module's per-token output over the batch's real tokens into a ``[units, n]``
    buffer (one column per sentence); the hook of ``stop_after`` ends the forward pass."""

    def __init__(self, n: int, pooling: str, stop_after: str | None) -> None:
        self.n, self.pooling, self.stop_after = n, pooling, stop_after
        self.buffers: dict[str, torch.Tensor] = {}
        self.rows: torch.Tensor | None = None  # the batch's sentence indices
        self.mask: torch.Tensor | None = None  # the batch's attention mask (bool)

    def hook(self, name: str) -> Any:
        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            mask = self.mask
            if out.dim() != 3 or out.shape[:2] != mask.shape:
                raise UsageError(
                    f"module {name!r} outputs shape {tuple(out.shape)}, not [batch, tokens, units]; "
                    "choose modules whose output is per token"
                )
            pooled = pool_tokens(out, mask, self.pooling)
            buf = self.buffers.get(name)
            if buf is None:
                buf = self.buffers[name] = torch.zeros((out.shape[-1], self.n), dtype=torch.float32)
            buf[:, self.rows] = pooled.T.to(device="cpu", dtype=torch.float32)
            if name == self.stop_after:
                raise _StopForward

        return hook


def _forward_batches(model: torch.nn.Module, pooler: _Pooler, names: list[str], ids: list[list[int]],
                     batches: list[list[int]], pad_id: int, padding_side: str, dev: torch.device,
                     progress: bool, skip_first: bool = False) -> int:
    """Run each batch of sentence indices with the pooling hooks attached, in eval mode (restored after); returns
    the number of real tokens seen."""
    from tqdm.auto import tqdm

    n_tokens = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), hooked(model, {name: pooler.hook(name) for name in names}):
            for rows in tqdm(batches, desc="responses", unit="batch", disable=not progress):
                input_ids, mask = pad_batch([ids[i] for i in rows], pad_id, padding_side)
                pooler.rows = torch.tensor(rows)
                pooler.mask = without_first_token(mask) if skip_first else mask.bool()
                n_tokens += int(mask.sum())
                kwargs: dict[str, Any] = {"attention_mask": mask.to(dev), "use_cache": False}
                if padding_side == "left":
                    # Real tokens keep positions 0..len-1, as without padding.
                    kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(dev)
                try:
                    model(input_ids=input_ids.to(dev), **kwargs)
                except _StopForward:
                    pass
    finally:
        model.train(was_training)
    return n_tokens


def _all_reduce(buffers: dict[str, torch.Tensor], names: list[str], n_tokens: int, dev: torch.device) -> int:
    """Sum every rank's buffers (in place in ``buffers``) and token counts; returns the total token count."""
    import torch.distributed as dist

    for name in names:
        buf = buffers[name]
        if dist.get_backend() == "nccl":
            buf = buf.to(dev)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        buffers[name] = buf.cpu()
    tokens = torch.tensor([n_tokens], dtype=torch.int64, device=dev if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tokens, op=dist.ReduceOp.SUM)
    return int(tokens.item())
