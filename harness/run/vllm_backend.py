"""``--backend vllm``: lm-eval's own vLLM model for checkpoints with the intervention already in the weights.

vLLM runs its own kernels, so forward hooks cannot reach it: activation-space interventions are refused with a
pointer to ``toxbench export`` (which folds AurA/Det0/Damp into the weights). Weight-space interventions (merged
DPO checkpoints) load their checkpoint; input-space ones (pre-prompting) rewrite contexts exactly as on HF.
Tensor/data parallelism are vLLM's: ``--backend-arg tensor_parallel_size=4 --backend-arg data_parallel_size=2``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..core.errors import UsageError


def check_vllm_compatible(intervention: Any, model: str) -> None:
    hooks = [p.name for p in intervention.parts if p.kind == "activation"]
    if hooks:
        raise UsageError(
            f"intervention {'+'.join(hooks)!r} works through forward hooks, which vLLM cannot run; fold it into the "
            f"weights with `toxbench export --model {model} --intervention {hooks[0]} --out DIR`, then "
            "`toxbench run --backend vllm --model DIR`"
        )


def make_vllm_lm(spec: Any, loaded: Any, intervention: Any, run_path: Path) -> Any:
    check_vllm_compatible(intervention, spec.model)
    try:
        from lm_eval.models.vllm_causallms import VLLM
    except ImportError as e:
        raise UsageError(f"--backend vllm needs vLLM on a CUDA machine: pip install 'toxbench[vllm]' ({e})") from None

    class InterventionVLLM(VLLM):
        """lm-eval's VLLM with input-space interventions applied to generation contexts."""

        def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
            wrapped, memo = [], {}
            for req in requests:  # lm-eval repeats the same object k times: rewrite each once, copy, keep logs clean
                if id(req) not in memo:
                    r = copy.copy(req)
                    r.arguments = (intervention.wrap_prompt(req.args[0], self.tokenizer), *req.args[1:])
                    memo[id(req)] = r
                wrapped.append(memo[id(req)])
            return super().generate_until(wrapped, disable_tqdm=disable_tqdm)

    opts = dict(spec.backend_options)
    path = loaded.path or spec.model
    return InterventionVLLM(pretrained=str(path), seed=spec.seed, dtype="auto" if spec.dtype == "auto" else spec.dtype,
                            batch_size="auto", max_model_len=spec.max_length, **opts)
