"""Shared fixtures: tiny in-process models, an isolated cache, the shared data dir."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/tiny.py

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def tiny_llama_model():
    from tiny import tiny_llama

    return tiny_llama()


@pytest.fixture
def tiny_gpt2_model():
    from tiny import tiny_gpt2

    return tiny_gpt2()


@pytest.fixture
def tiny_llama_dir(tmp_path_factory):
    from tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny_llama"), "llama")


@pytest.fixture
def tiny_gpt2_dir(tmp_path_factory):
    from tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny_gpt2"), "gpt2")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("TOXBENCH_CACHE", str(d))
    return d


@pytest.fixture
def data_dir():
    from toxbench.harness.core.paths import data_dir as resolve

    return resolve()


@pytest.fixture(scope="session")
def smollm2_cache():
    """The real embedded model, converted once per machine into the default cache (slow tests only)."""
    from toxbench.harness.core.models import embedded_checkpoint

    return embedded_checkpoint("smollm2-135m")
