"""Named sampling presets (`--sampling NAME`): expansion, explicit overrides, CLI and suites, identity."""

from __future__ import annotations

import pytest

from toxbench.harness.cli.run import build_spec
from toxbench.harness.core.errors import UsageError
from toxbench.harness.spec.sampling import SAMPLING_PRESETS, expand
from toxbench.harness.spec.runspec import GenerationSettings
from toxbench.harness.run.suite import load_suite


def test_expand_and_explicit_overrides():
    g = expand("aura-paper", GenerationSettings(k=5))
    assert (g.k, g.max_new_tokens, g.top_k, g.top_p, g.temperature) == (5, 20, 50, 1.0, 1.0)
    assert expand("xg", GenerationSettings()).temperature == 0.9 and expand("xg", GenerationSettings()).top_p == 0.8
    assert expand(None, GenerationSettings(k=3)) == GenerationSettings(k=3)
    with pytest.raises(UsageError, match="unknown sampling preset 'rtpp'.*Did you mean 'rtp'"):
        expand("rtpp", GenerationSettings())


def test_cli_spec_records_the_expanded_settings(tmp_path):
    base = dict(model="smollm2-135m", tasks=("rtp_challenging",), output_dir=str(tmp_path))
    rtp, paper = build_spec(**base, sampling="rtp"), build_spec(**base, sampling="aura-paper")
    assert rtp.generation == SAMPLING_PRESETS["rtp"].settings
    assert paper.generation.top_k == 50 and rtp.fingerprint() != paper.fingerprint()
    assert build_spec(**base, sampling="rtp", top_p=0.95).generation.top_p == 0.95


def test_suite_sampling_setting(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: s\nsettings: {sampling: xg, generation: {k: 4}}\nmodels: [smollm2-135m]\n"
                 "interventions: [none]\ntasks: [rtp_challenging]\n")
    (spec,) = load_suite(f).specs
    assert (spec.generation.k, spec.generation.temperature, spec.generation.top_p) == (4, 0.9, 0.8)
