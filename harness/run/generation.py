"""Fast, deterministic, resumable sampling of k continuations per prompt.

Why not ``model.generate(num_return_sequences=k)``: it copies each prompt k times *before* the prefill, runs one
prompt per call (or pads wildly when batched), and its sampling stream depends on batch composition. Here:

- every prompt is prefilled ONCE (``logits_to_keep=1``); its KV cache is then repeated k times in the batch
  dimension (``DynamicCache.batch_repeat_interleave``), so the k samples share the prefill;
- prompts are batched by token length (left padding, little of it) so each decode step runs ``P x k`` rows;
- sampling is a hand-written loop over vectorised tensor ops (temperature -> top-k -> top-p, the order and rule of
  transformers' logits warpers) with inverse-CDF draws from noise that is pre-generated *per prompt* from
  ``(seed, prompt hash, occurrence)``: outputs depend on the prompt and the seed, not on which batch it landed in
  (up to float rounding from different padding);
- batches are fixed by the full context list (sort by token length, then text hash) and every finished batch is
  appended + fsynced to ``cache_path``; a restarted run skips the prompts found there and regenerates the rest in
  the same batches, so a killed-and-restarted run returns identical outputs.

Only new tokens are decoded; a row stops at an EOS token; ``until`` stop strings truncate the decoded text.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..core.defaults import DEFAULT_BATCH_SIZE, DEFAULT_SEED
from ..core.io import append_jsonl, canonical_json, read_jsonl
from ..core.models import model_fingerprint, tokenizer_fingerprint

log = logging.getLogger(__name__)

#: Candidate counts tried in turn for top-p before a full sort (exact either way; on SmolLM2 + RTP text the 0.9
#: nucleus has a median of ~85 tokens, ~11% of positions need > 1,024 and ~0.4% > 4,096).
NUCLEUS_PROBES = (64, 512, 4096)
CACHE_FORMAT = 2


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _prompt_seed(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{key}".encode()).digest()[:8], "little") & ((1 << 63) - 1)


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    gen_cfg = getattr(model, "generation_config", None)
    for src in (getattr(tokenizer, "eos_token_id", None), getattr(gen_cfg, "eos_token_id", None)):
        if isinstance(src, int):
            ids.add(src)
        elif isinstance(src, (list, tuple)):
            ids.update(int(x) for x in src)
    return sorted(ids)


def truncate_at_stops(text: str, until: Sequence[str] | None) -> str:
    """Cut ``text`` at the earliest occurrence of any stop string (lm-eval's ``until`` semantics)."""
    if not until:
        return text
    cut = len(text)
    for s in until:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


def sample_next(
    logits: torch.Tensor, u: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0
) -> torch.Tensor:
    """One token per row by inverse CDF with uniforms ``u`` (shape [B]), after temperature, top-k, top-p.

    Matches transformers' TemperatureLogitsWarper -> TopKLogitsWarper -> TopPLogitsWarper: top-p keeps, in
    descending order, every token whose preceding mass is < top_p (at least one token).
    """
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    B, V = logits.shape
    if top_k and 0 < top_k < V:
        vals, idx = logits.topk(top_k, dim=-1)
        probs = torch.softmax(vals, dim=-1)
        return _nucleus_draw(probs, idx, u, top_p)
    if top_p >= 1.0:  # plain sampling over the whole vocabulary: no sort needed
        probs = torch.softmax(logits, dim=-1)
        cdf = probs.cumsum(-1)
        choice = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1).to(cdf.dtype), right=True).clamp_(max=V - 1)
        return choice.squeeze(1)
    # Exact top-p without sorting the vocabulary: take the top K candidates for growing K; a row is resolved as
    # soon as its candidates hold >= top_p of the mass (its nucleus is then inside them). Most rows stop at 64.
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)
    out = torch.empty(B, dtype=torch.long, device=logits.device)
    rows = torch.arange(B, device=logits.device)
    for kk in (*NUCLEUS_PROBES, V):
        kk = min(kk, V)
        full = len(rows) == B
        sub = logits if full else logits[rows]  # no copy of the whole logits matrix at the first level
        vals, idx = sub.topk(kk, dim=-1) if kk < V else sub.sort(dim=-1, descending=True)
        probs = torch.exp(vals - (lse if full else lse[rows]))
        ok = probs.sum(-1) >= top_p if kk < V else torch.ones(len(rows), dtype=torch.bool, device=logits.device)
        if ok.any():
            out[rows[ok]] = _nucleus_draw(probs[ok], idx[ok], u[rows[ok]], top_p)
        rows = rows[~ok]
        if len(rows) == 0:
            break
    return out


def _nucleus_draw(probs: torch.Tensor, idx: torch.Tensor, u: torch.Tensor, top_p: float) -> torch.Tensor:
    """``probs``: a row's top candidates sorted descending, normalised over the whole (top-k) distribution, with
    their token ``idx``; keeps those whose preceding mass is < top_p, then draws by inverse CDF."""
    if top_p < 1.0:
        keep = (probs.cumsum(-1) - probs) < top_p
        keep[:, 0] = True  # at least one token (HF's min_tokens_to_keep=1)
        probs = probs * keep
    cdf = probs.cumsum(-1)
    pos = torch.searchsorted(cdf, (u.to(cdf.dtype) * cdf[:, -1]).unsqueeze(1), right=True)
    pos = pos.clamp_(max=probs.shape[-1] - 1)
    return idx.gather(1, pos).squeeze(1)


class _Settings(dict):
    def digest(self) -> str:
        return _hash(canonical_json(self))[:16]


def _load_cache(path: Path | None, digest: str) -> dict[str, list[str]]:
    if path is None or not Path(path).exists():
        return {}
    done: dict[str, list[str]] = {}
    for row in read_jsonl(path, torn_tail=True):
        if row.get("settings") == digest and "key" in row:
            done[row["key"]] = row["samples"]
    return done


@torch.inference_mode()
def generate_samples(
    model: Any,
    tokenizer: Any,
    contexts: list[str],
    k: int,
    max_new_tokens: int,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_p: float = 0.9,
    top_k: int = 0,
    until: list[str] | None = None,
    seed: int = DEFAULT_SEED,
    batch_size: int = DEFAULT_BATCH_SIZE,
    cache_path: Path | None = None,
    progress: bool = True,
    add_special_tokens: bool = True,
) -> list[list[str]]:
    """``k`` continuations of up to ``max_new_tokens`` new tokens for each context, in input order.

    ``batch_size`` counts *prompts* per batch; each decodes ``k`` rows, so a batch runs ``batch_size x k`` rows
    (16 x 25 = 400 for RTP: wide enough for efficient matmuls on CPU, about 1 GB of KV cache for SmolLM2).
    ``add_special_tokens`` is passed to the tokenizer (its default True adds BOS where the model expects one,
    as ``tokenizer(prompt)`` in the RTP/AurA scripts). ``cache_path``: per-run JSONL of finished prompts (put it
    in the run directory: it is keyed by these settings and the weights' and tokenizer's content, not by an
    intervention).
    Greedy decoding (``do_sample=False``) generates one row per prompt and repeats it k times.
    """
    if k < 1 or max_new_tokens < 1:
        raise ValueError("k and max_new_tokens must be >= 1")
    if not contexts:
        return []
    until = list(until or [])
    if do_sample and temperature <= 0:  # lm-eval's convention: temperature 0 means greedy
        do_sample = False
    cfg = getattr(model, "config", None)
    # Content, never paths: a run dir that is copied, moved or read through another cache dir resumes.
    digest = _Settings(format=CACHE_FORMAT, k=k, max_new_tokens=max_new_tokens, do_sample=bool(do_sample),
                       temperature=float(temperature), top_p=float(top_p), top_k=int(top_k), until=until,
                       seed=int(seed), add_special_tokens=bool(add_special_tokens), model=model_fingerprint(model),
                       tokenizer=tokenizer_fingerprint(tokenizer)).digest()
    keys = _prompt_keys(contexts)
    ids = _encode(tokenizer, contexts, add_special_tokens, getattr(cfg, "max_position_embeddings", None),
                  max_new_tokens)
    batches = _batches(ids, keys, batch_size)

    done = _load_cache(cache_path, digest)
    todo = [b for b in batches if not all(keys[i] in done for i in b)]
    if len(todo) < len(batches):
        log.info("generation cache: %d of %d batches already done", len(batches) - len(todo), len(batches))

    runner = _BatchRunner(model, tokenizer, max_new_tokens, do_sample, temperature, top_p, top_k, until, seed)
    _run_batches(runner, todo, ids, keys, k, digest, done, cache_path, len(contexts) if progress else None)
    return [list(done[key]) for key in keys]


def _batches(ids: list[list[int]], keys: list[str], batch_size: int) -> list[list[int]]:
    """Prompts sorted by (token length, key) and cut into batches: the batch a prompt lands in is fixed by the
    whole context list, and a subset made of whole batches is cut into the same batches again."""
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), keys[i]))
    per_batch = max(1, int(batch_size))
    return [order[i : i + per_batch] for i in range(0, len(order), per_batch)]


def batch_plan(model: Any, tokenizer: Any, contexts: list[str], batch_size: int, max_new_tokens: int,
               add_special_tokens: bool = True) -> list[list[int]]:
    """The batches (indices into ``contexts``) ``generate_samples`` decodes ``contexts`` in. A shard made of
    whole batches of this plan is decoded in exactly these batches, so its samples are bitwise those of the
    unsharded run (fp32 matmuls are not row-invariant across batch shapes, so same batches is what it takes)."""
    cfg = getattr(model, "config", None)
    ids = _encode(tokenizer, contexts, add_special_tokens, getattr(cfg, "max_position_embeddings", None),
                  max_new_tokens)
    return _batches(ids, _prompt_keys(contexts), batch_size)


def _run_batches(runner: _BatchRunner, todo: list[list[int]], ids: list[list[int]], keys: list[str], k: int,
                 digest: str, done: dict[str, list[str]], cache_path: Path | None, total: int | None) -> None:
    """Decode every batch of ``todo`` into ``done`` (key -> samples), appending each finished batch to the cache;
    ``total``: the number of prompts for a progress bar (None: no bar)."""
    bar = None
    if total is not None:
        from tqdm.auto import tqdm

        initial = total - sum(len(b) for b in todo)
        bar = tqdm(total=total, initial=initial, desc="generate", unit="prompt")
    try:
        for b in todo:
            outs = runner.run([ids[i] for i in b], [keys[i] for i in b], k)
            rows = [{"settings": digest, "key": keys[i], "samples": o} for i, o in zip(b, outs)]
            for r in rows:
                done[r["key"]] = r["samples"]
            if cache_path is not None:
                append_jsonl(cache_path, rows)
            if bar is not None:
                bar.update(len(b))
    finally:
        if bar is not None:
            bar.close()


def _prompt_keys(contexts: list[str]) -> list[str]:
    """Stable keys: text hash + occurrence, so duplicate prompts still get independent samples."""
    seen: dict[str, int] = {}
    keys: list[str] = []
    for c in contexts:
        h = _hash(c)[:32]
        keys.append(f"{h}:{seen.get(h, 0)}")
        seen[h] = seen.get(h, 0) + 1
    return keys


def _encode(tokenizer: Any, contexts: list[str], add_special_tokens: bool, max_pos: int | None,
            max_new_tokens: int) -> list[list[int]]:
    """Token ids per context: never empty, and cut from the left so that prompt + new tokens fit ``max_pos``."""
    enc = tokenizer(list(contexts), add_special_tokens=add_special_tokens)["input_ids"]
    fallback = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    ids: list[list[int]] = []
    for e in enc:
        e = list(e) or [fallback]  # an empty prompt still needs one position to condition on
        if max_pos and len(e) + max_new_tokens > max_pos:
            e = e[-(max_pos - max_new_tokens):]  # keep the end of an over-long prompt
        ids.append(e)
    return ids


class _BatchRunner:
    def __init__(self, model, tokenizer, max_new_tokens, do_sample, temperature, top_p, top_k, until, seed):
        self.model, self.tok = model, tokenizer
        self.T, self.do_sample = max_new_tokens, do_sample
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self.until, self.seed = until, seed
        self.eos = torch.tensor(_eos_ids(model, tokenizer) or [-1], dtype=torch.long)
        pad = tokenizer.pad_token_id
        self.pad = pad if pad is not None else (int(self.eos[0]) if int(self.eos[0]) >= 0 else 0)
        params = inspect.signature(model.forward).parameters
        self.keep_arg = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        # transformers >= 5.x renamed ``past_key_values`` to ``cache`` (the old name warns).
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        try:
            self.device = next(model.parameters()).device
        except StopIteration:  # pragma: no cover - parameterless test doubles
            self.device = torch.device("cpu")

    def _prefill(self, prompts: list[list[int]], R: int) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded prompts prefilled once (last position's logits only); with ``R`` > 1 the KV cache, logits
        and mask are repeated R times, adjacent in the batch (the k samples share the prefill)."""
        from transformers import DynamicCache

        P, L, dev = len(prompts), max(len(p) for p in prompts), self.device
        input_ids = torch.full((P, L), self.pad, dtype=torch.long)
        mask = torch.zeros((P, L), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding
            input_ids[i, L - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, L - len(p):] = 1
        input_ids, mask = input_ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(-1) - 1).clamp_(min=0)
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=True,
                         **{self.cache_arg: cache}, **self.keep_arg)
        logits = out.logits[:, -1, :]
        if R > 1:
            cache.batch_repeat_interleave(R)
            logits = logits.repeat_interleave(R, dim=0)
            mask = mask.repeat_interleave(R, dim=0)
        return cache, logits, mask, pos[:, -1].repeat_interleave(R)

    def run(self, prompts: list[list[int]], keys: list[str], k: int) -> list[list[str]]:
        P, dev = len(prompts), self.device
        R = k if self.do_sample else 1
        cache, logits, mask, last_pos = self._prefill(prompts, R)
        B = P * R
        if self.do_sample:  # per-prompt noise: independent of batch composition
            gens = [torch.Generator().manual_seed(_prompt_seed(self.seed, key)) for key in keys]
            u = torch.cat([torch.rand(R, self.T, generator=g, dtype=torch.float64) for g in gens]).to(dev)
        tokens = torch.full((B, self.T), self.pad, dtype=torch.long, device=dev)
        finished = torch.zeros(B, dtype=torch.bool, device=dev)
        eos = self.eos.to(dev)
        n_steps = 0
        for t in range(self.T):
            if self.do_sample:
                nxt = sample_next(logits, u[:, t], self.temperature, self.top_p, self.top_k)
            else:
                nxt = logits.argmax(-1)
            nxt = torch.where(finished, torch.full_like(nxt, self.pad), nxt)
            tokens[:, t] = nxt
            n_steps = t + 1
            finished |= torch.isin(nxt, eos)
            if t == self.T - 1 or bool(finished.all()):
                break
            mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)  # finished rows run on, output ignored
            last_pos = last_pos + 1
            out = self.model(input_ids=nxt.unsqueeze(1), attention_mask=mask, position_ids=last_pos.unsqueeze(1),
                             use_cache=True, **{self.cache_arg: cache})
            logits = out.logits[:, -1, :]
        texts = self._decode(tokens[:, :n_steps].cpu(), eos.cpu())
        if R == 1 and k > 1:
            return [[s] * k for s in texts]
        return [texts[i * R : (i + 1) * R] for i in range(P)]

    def _decode(self, tokens: torch.Tensor, eos: torch.Tensor) -> list[str]:
        """Each row's tokens before its first EOS (vectorised), one batched decode, cut at the stop strings."""
        B, n_steps = tokens.shape
        is_eos = torch.isin(tokens, eos)
        first = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full((B,), n_steps))
        rows = [r[:n].tolist() for r, n in zip(tokens, first.tolist())]
        texts = self.tok.batch_decode(rows, skip_special_tokens=True)
        return [truncate_at_stops(s, self.until) for s in texts]
