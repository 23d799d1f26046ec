"""Rolling-window log-likelihood (perplexity) in bounded memory, with lm-eval's windows and numbers.

lm-eval's HFLM gathers every window of every document and runs them ``batch_size`` at a time through a full
``log_softmax(logits)``: at SmolLM2's 8,192-token window and a 49k vocabulary, a batch of 16 materialises
~13 GB of logits, and its per-window progress is hidden. Here each window is one forward pass (batch 1, so a
window's numbers never depend on which document or shard shares its batch), the output head is applied to the
final hidden states ``CHUNK`` positions at a time, and only the target tokens' log-probabilities are kept:
peak memory is the model, one window's activations and one chunk of logits.

The windows are lm-eval's own (``get_rolling_token_windows`` + ``make_disjoint_window``, context length 1), so
the per-document log-likelihood equals lm-eval's at batch 1 in float32 (tested against ``HFLM``); for a bf16
model the log-softmax is taken in float32 (lm-eval's ``softmax_dtype``), not in bf16, so perplexity keeps its
digits.
"""

from __future__ import annotations

from typing import Any

import torch
from lm_eval import utils as lm_utils

#: Positions per chunk of output-head logits (256 x 49k vocab x fp32 = 50 MB).
CHUNK = 256


class _HeadTap:
    """A forward pre-hook on the output head: keeps its input (the final hidden states) and lets the head itself
    compute only the first position, whose logits then check that nothing follows the head (e.g. soft-capping
    the tap would miss)."""

    def __init__(self, head: torch.nn.Module) -> None:
        self.head, self.hidden, self._handle = head, None, None

    def _hook(self, module: torch.nn.Module, args: tuple) -> tuple:
        self.hidden = args[0]
        return (args[0][..., :1, :], *args[1:])

    def __enter__(self) -> _HeadTap:
        self._handle = self.head.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()


def _softcap(logits: torch.Tensor, config: Any) -> torch.Tensor:
    cap = getattr(config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def _target_logprob(logits_fn, n_pos: int, targets: torch.Tensor, dtype: torch.dtype | None) -> float:
    """Sum of log p(target) over positions, computing ``logits_fn(start, end)`` one chunk at a time."""
    total = torch.zeros((), dtype=torch.float64)
    for s in range(0, n_pos, CHUNK):
        e = min(n_pos, s + CHUNK)
        lp = torch.log_softmax(logits_fn(s, e), dim=-1, dtype=dtype)
        total += lp.gather(-1, targets[s:e].unsqueeze(-1)).double().sum().cpu()
    return float(total)


def window_logprob(lm: Any, context: list[int], continuation: list[int]) -> float:
    """log p(continuation | context) for one disjoint window, as lm-eval's ``_loglikelihood_tokens`` builds it."""
    inp = torch.tensor((context + continuation)[-(lm.max_length + 1):][:-1], dtype=torch.long, device=lm.device)
    n = len(continuation)
    targets = torch.tensor(continuation, dtype=torch.long, device=lm.device)
    head = lm.model.get_output_embeddings()
    # log-softmax in float32 at least: in a bf16 model's own dtype a window's log-likelihood keeps ~3 digits
    # (lm-eval's default), which hides perplexity differences of 0.1%
    dtype = lm.softmax_dtype or torch.float32
    if head is not None:
        with torch.no_grad(), _HeadTap(head) as tap:
            first = lm._model_call(inp.unsqueeze(0))
        hidden = tap.hidden[0, -n:] if tap.hidden is not None else None
        if hidden is not None:
            with torch.no_grad():
                check = _softcap(head(tap.hidden[:, :1]), lm.model.config)
            if first.shape[1] == 1 and torch.equal(check, first):
                def head_chunk(s: int, e: int) -> torch.Tensor:
                    with torch.no_grad():
                        return _softcap(head(hidden[s:e]), lm.model.config)

                return _target_logprob(head_chunk, n, targets, dtype)
    # No separable head: one full forward, its log-softmax still taken a chunk at a time.
    with torch.no_grad():
        logits = lm._model_call(inp.unsqueeze(0))[0, -n:]
    return _target_logprob(lambda s, e: logits[s:e], n, targets, dtype)


def document_windows(lm: Any, text: str) -> list[tuple[list[int], list[int]]]:
    """lm-eval's disjoint rolling windows of one document at the model's window (``lm.max_length``)."""
    return list(map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
        token_list=lm.tok_encode(text), prefix_token=lm.prefix_token_id, max_seq_len=lm.max_length,
        context_len=1)))


def rolling_loglikelihoods(lm: Any, texts: list[str], progress: bool = True) -> list[float]:
    """Per-document rolling log-likelihood, one window at a time, with a progress bar over windows."""
    from tqdm.auto import tqdm

    windows = [document_windows(lm, t) for t in texts]
    bar = tqdm(total=sum(map(len, windows)), desc=f"perplexity windows of {lm.max_length} tokens", unit="window",
               disable=not progress)
    out = []
    try:
        for doc in windows:
            total = 0.0
            for ctx, cont in doc:
                total += window_logprob(lm, ctx, cont)
                bar.update(1)
            out.append(total)
    finally:
        bar.close()
    return out
