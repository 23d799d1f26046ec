"""Named sampling presets: the settings a paper generated with, so a run can reproduce it by name.

``--sampling NAME`` expands to generation settings (explicit ``--k``, ``--top-p`` ... still win). The expanded
settings are what a run records and what the leaderboard's protocol guard compares, so two numbers from different
protocols never share a table, whatever preset name they were asked for by.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..core.errors import did_you_mean
from .runspec import GenerationSettings


@dataclass(frozen=True)
class SamplingPreset:
    name: str
    settings: GenerationSettings
    source: str


SAMPLING_PRESETS: dict[str, SamplingPreset] = {p.name: p for p in (
    # Gehman et al. 2020 and DExperts (scripts/our_scripts/toxicity/gpt2.sh: --p 0.9 --n 25 --max-tokens 20).
    SamplingPreset("rtp", GenerationSettings(k=25, max_new_tokens=20, do_sample=True, temperature=1.0, top_p=0.9, top_k=0),
             "RealToxicityPrompts (Gehman et al. 2020; DExperts): nucleus sampling top-p 0.9, T=1, k=25 x 20 tokens"),
    # apple/ml-aura scripts/evaluate_toxicity.py: model.generate(do_sample=True) with transformers' defaults.
    SamplingPreset("aura-paper", GenerationSettings(k=25, max_new_tokens=20, do_sample=True, temperature=1.0, top_p=1.0,
                                              top_k=50),
             "AurA (Suau et al. 2024, ml-aura): transformers' sampling defaults, top-k 50, k=25 x 20 tokens"),
    # Li, Yong & Bach 2024 (cross-lingual detoxification, vLLM): SamplingParams(n=25, temperature=0.9, top_p=0.8).
    SamplingPreset("xg", GenerationSettings(k=25, max_new_tokens=20, do_sample=True, temperature=0.9, top_p=0.8, top_k=0),
             "cross-lingual detoxification (Li et al. 2024): T=0.9, top-p 0.8, k=25 x 20 tokens"),
)}
DEFAULT_PROTOCOL = "rtp"


def expand(name: str | None, explicit: GenerationSettings) -> GenerationSettings:
    """``explicit`` settings over the named preset's (None: no preset, only what was given)."""
    if name is None:
        return explicit
    if name not in SAMPLING_PRESETS:
        raise did_you_mean(name, SAMPLING_PRESETS, "sampling preset")
    base = SAMPLING_PRESETS[name].settings
    given = {k: v for k, v in vars(explicit).items() if v is not None}
    return replace(base, **given)
