"""RunSpec: everything that determines a result, frozen, with a stable fingerprint (HELM style)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..core.defaults import DEFAULT_BATCH_SIZE, DEFAULT_MODEL, DEFAULT_SEED
from ..core.hardware import resolve_dtype_name
from ..core.io import canonical_json, sha256_text

#: Fields that change how fast a run goes, not what it computes: recorded, but not in the fingerprint.
#: Paths are not identity either: the data is identified by its hashes (``data_sha256``, each task's
#: ``data_hash``), so a run dir copied to another machine, or read through another data or cache dir, resumes.
NON_SEMANTIC = ("batch_size", "device", "output_dir", "backend_options", "cache_dir", "threads", "data_dir", "data",
                "allow_unfingerprinted_state")


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling protocol for generation tasks; None means "the task's own default" (e.g. RTP: k=25, 20 tokens)."""

    k: int | None = None
    max_new_tokens: int | None = None
    do_sample: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None


@dataclass(frozen=True)
class RunSpec:
    model: str = DEFAULT_MODEL
    model_revision: str | None = None
    dtype: str = "auto"
    intervention: str = "none"
    #: ``(("aura.k", 50), ...)`` style pairs so the spec stays hashable; see interventions.build.
    intervention_args: tuple[tuple[str, Any], ...] = ()
    intervention_state: str | None = None
    tasks: tuple[str, ...] = ("wikitext",)
    #: "auto" = the English default scorer for English tasks, the multilingual one for other languages.
    scorer: str = "auto"
    scorer_args: tuple[tuple[str, Any], ...] = ()
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    seed: int = DEFAULT_SEED
    limit: int | None = None
    #: Context window for loglikelihood tasks (None: the model's); rolling perplexity depends on it.
    max_length: int | None = None
    data_dir: str = ""
    #: A user's data file for tasks that read one (e.g. ``rtp`` = a full RealToxicityPrompts JSONL) + its sha256.
    data: str | None = None
    data_sha256: str | None = None
    include_paths: tuple[str, ...] = ()
    backend: str = "hf"
    shard: tuple[int, int] | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "auto"
    output_dir: str = "runs"
    cache_dir: str = ""
    backend_options: tuple[tuple[str, Any], ...] = ()
    trust_remote_code: bool = False
    threads: int | None = None
    #: Accept an --intervention-state without model_fingerprint metadata (the user vouches it fits this model).
    allow_unfingerprinted_state: bool = False

    def to_dict(self) -> dict[str, Any]:
        return json.loads(canonical_json(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if isinstance(kw.get("generation"), dict):
            kw["generation"] = GenerationSettings(**kw["generation"])
        for k in ("intervention_args", "scorer_args", "backend_options"):
            if k in kw:
                kw[k] = tuple(tuple(x) for x in kw[k])
        for k in ("tasks", "include_paths"):
            if k in kw:
                kw[k] = tuple(kw[k])
        if kw.get("shard") is not None:
            kw["shard"] = tuple(kw["shard"])
        return cls(**kw)

    def semantic_dict(self) -> dict[str, Any]:
        """The fields that change results. Unset (None) fields are left out, so adding a new optional field to
        RunSpec never changes the fingerprint of existing runs."""
        d = self.to_dict()
        d["dtype"] = self.resolved_dtype()  # "auto" means another dtype on another machine: another result
        for k in NON_SEMANTIC:
            d.pop(k, None)
        d["generation"] = {k: v for k, v in d["generation"].items() if v is not None}
        return {k: v for k, v in d.items() if v is not None}

    def resolved_dtype(self) -> str:
        return resolve_dtype_name(self.dtype, self.device)

    def fingerprint(self) -> str:
        return sha256_text(canonical_json(self.semantic_dict()))[:16]

    def run_id(self) -> str:
        """``<model>__<intervention>__<fingerprint>``: readable and unique."""
        model = re.sub(r"[^A-Za-z0-9._-]+", "-", self.model.rstrip("/").split("/")[-1])[:40]
        interv = re.sub(r"[^A-Za-z0-9+._-]+", "-", self.intervention)[:40]
        shard = f"__shard{self.shard[0]}of{self.shard[1]}" if self.shard else ""
        return f"{model}__{interv}__{self.fingerprint()[:10]}{shard}"
