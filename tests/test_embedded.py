"""Integration on the real embedded SmolLM2 (slow: converts the GGUF once per machine, then evaluates)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from toxbench.harness.cli import main

pytestmark = pytest.mark.slow


def test_embedded_smollm2_loads_as_plain_checkpoint(smollm2_cache):
    from toxbench.harness.core.models import load_model

    lm = load_model("smollm2-135m", device="cpu")
    assert lm.path == str(smollm2_cache)  # the cached safetensors, not the GGUF
    assert type(lm.model).__name__ == "LlamaForCausalLM"
    assert lm.model.config.num_hidden_layers == 30 and lm.model.config.intermediate_size == 1536
    assert not hasattr(lm.model.config, "quantization_config")
    assert (smollm2_cache / "model.safetensors").is_file()
    assert lm.source == "embedded" and lm.revision.startswith("gguf:")


def test_run_wikitext_on_smollm2_then_skip(smollm2_cache, tmp_path):
    args = ["run", "--model", "smollm2-135m", "--tasks", "wikitext", "--limit", "2", "--max-length", "512",
            "--device", "cpu", "-o", str(tmp_path)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    (run_dir,) = list(tmp_path.iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    ppl = results["tasks"]["wikitext"]["metrics"]["word_perplexity"]["value"]
    assert 10 < ppl < 200, ppl  # a real 135M model on WikiText-2, not a random one
    mtime = (run_dir / "results.json").stat().st_mtime_ns
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "already complete" in again.output
    assert (run_dir / "results.json").stat().st_mtime_ns == mtime  # skipped: nothing recomputed or rewritten
