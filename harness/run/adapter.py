"""HookedLM: lm-eval's HFLM running every request under a toxbench intervention (cf. lm-eval ``hf_steered``).

- loglikelihood: HFLM's own batching, with the intervention attached around each forward.
- rolling loglikelihood (perplexity): lm-eval's windows, one at a time in bounded memory (``rolling.py``).
- generate_until: the identical contexts lm-eval sends for ``repeats: k`` are grouped, the context is rewritten by
  input-space interventions (the continuation never contains the rewrite: only new tokens are decoded), and the
  k samples come from ``toxbench.harness.run.generation.generate_samples`` (shared prefill, batched across prompts,
  seeded per batch and appended to a per-run cache so a killed run resumes with identical samples).
Results are never shared across interventions: the generation cache lives in the run directory, whose name
carries the RunSpec fingerprint (intervention and state hash included); lm-eval's own request cache is not used.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

from ...interventions.base import Intervention
from ..core.defaults import DEFAULT_BATCH_SIZE, DEFAULT_SEED
from ..spec.rundir import RunDir
from . import lm_eval_logs  # noqa: F401  (drops lm-eval's per-run noise)
from .generation import generate_samples
from .rolling import rolling_loglikelihoods


@register_model("toxbench")
class HookedLM(HFLM):
    def __init__(
        self,
        pretrained: Any,
        tokenizer: Any = None,
        intervention: Intervention | None = None,
        generation_cache: str | Path | None = None,
        seed: int = DEFAULT_SEED,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = True,
        **kwargs: Any,
    ) -> None:
        # `pretrained`: a model object (toxbench), or a name (`lm_eval --model toxbench`, no intervention)
        super().__init__(pretrained=pretrained, tokenizer=tokenizer, batch_size=batch_size, **kwargs)
        self.progress = progress
        self.intervention = intervention or Intervention()
        self.generation_cache = Path(generation_cache) if generation_cache else None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not isinstance(pretrained, str):
            # `accelerate launch toxbench run ...`: one model copy per rank; lm-eval splits the documents across
            # ranks and gathers the samples on rank 0 (its own data-parallel path, used here with our model).
            from accelerate import Accelerator

            self.accelerator = Accelerator()
            self._rank = self.accelerator.process_index
            self._world_size = self.accelerator.num_processes
            if self.generation_cache is not None:
                self.generation_cache = self.generation_cache / f"rank{self._rank}"
        self.seed = seed
        self.gen_batch_size = int(batch_size) if str(batch_size).isdigit() else 16

    # -- activation-space interventions wrap every forward pass -----------------------------------------------
    def _model_call(self, inps: torch.Tensor, attn_mask: torch.Tensor | None = None, labels: Any = None):
        with self.intervention.attach(self.model):
            return super()._model_call(inps, attn_mask, labels)

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        with self.intervention.attach(self.model):
            return super()._model_generate(context, max_length, stop, **generation_kwargs)

    # -- perplexity: one window at a time, the output head applied in chunks (bounded memory) -----------------
    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        if self.world_size > 1:  # lm-eval's own path pads and gathers windows across ranks
            return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
        texts = [req.args[0] for req in requests]
        out = rolling_loglikelihoods(self, texts, progress=self.progress and not disable_tqdm and self.rank == 0)
        for text, total in zip(texts, out):
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
        return out

    # -- generation: grouped repeats, input-space rewrite, shared-prefill sampling ----------------------------
    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        # Group the k identical copies of each request (lm-eval clones a request `repeats` times, in a row).
        groups: OrderedDict[tuple, list[int]] = OrderedDict()
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args
            key = (
                getattr(req, "task_name", None),
                getattr(req, "doc_id", None),
                context,
                json.dumps(gen_kwargs, sort_keys=True, default=str),
            )
            groups.setdefault(key, []).append(i)

        # One generate_samples call per distinct generation setting; each covers many prompts.
        by_setting: OrderedDict[str, list[tuple]] = OrderedDict()
        for key in groups:
            by_setting.setdefault(key[3], []).append(key)

        out: list[str | None] = [None] * len(requests)
        eos = self.tok_decode([self.eot_token_id], skip_special_tokens=False) if self.eot_token_id is not None else None
        for setting, keys in by_setting.items():
            kw = normalize_gen_kwargs(json.loads(setting), self.max_gen_toks)
            until = handle_stop_sequences(kw.pop("until", None), eos=eos)
            max_new = int(kw.pop("max_gen_toks"))
            k = max(len(groups[key]) for key in keys)
            contexts = [self.intervention.wrap_prompt(key[2], self.tokenizer) for key in keys]
            cache = None
            if self.generation_cache is not None:
                task = keys[0][0] or "generate"
                cache = RunDir(self.generation_cache).generations_file(task)
            with self.intervention.attach(self.model):
                samples = generate_samples(
                    self.model,
                    self.tokenizer,
                    contexts,
                    k=k,
                    max_new_tokens=max_new,
                    do_sample=bool(kw.get("do_sample", False)),
                    temperature=float(kw.get("temperature", 1.0) or 1.0),
                    top_p=float(kw.get("top_p", 1.0) or 1.0),
                    top_k=int(kw.get("top_k", 0) or 0),
                    until=until,
                    seed=self.seed,
                    batch_size=self.gen_batch_size,
                    cache_path=cache,
                    progress=self.progress and not disable_tqdm,
                )
            for key, conts in zip(keys, samples):
                for j, idx in enumerate(groups[key]):
                    out[idx] = conts[j]
        return [o if o is not None else "" for o in out]
