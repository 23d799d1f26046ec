"""Backend selection errors (CPU): vLLM refuses hook interventions before loading anything."""

from __future__ import annotations

from click.testing import CliRunner

from toxbench.harness.cli import main


def test_vllm_refuses_hook_interventions_with_export_hint():
    res = CliRunner().invoke(main, ["run", "--backend", "vllm", "--intervention", "aura", "--tasks", "wikitext"])
    assert res.exit_code == 2
    assert "toxbench export" in res.output and len(res.output.strip().splitlines()) == 1


def test_vllm_refuses_hooks_inside_a_composition():
    res = CliRunner().invoke(main, ["run", "--backend", "vllm", "--intervention", "preprompt+det0"])
    assert res.exit_code == 2 and "det0" in res.output


def test_unknown_backend():
    res = CliRunner().invoke(main, ["run", "--backend", "vlm"])
    assert res.exit_code == 2 and "Did you mean 'vllm'" in res.output


def test_vllm_missing_is_one_line(tiny_llama_dir, tmp_path, cache_dir):
    import importlib.util

    import pytest

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here: the missing-vLLM message cannot be exercised")
    res = CliRunner().invoke(main, ["run", "--backend", "vllm", "--model", str(tiny_llama_dir), "--tasks",
                                    "wikitext", "--limit", "1", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "pip install 'toxbench[vllm]'" in res.output
