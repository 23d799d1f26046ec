"""Runner: run dirs, resume after a kill, skip-completed, shard + merge == unsharded."""

from __future__ import annotations

import json

import pytest

from toxbench.harness.run.adapter import HookedLM
from toxbench.harness.run.merge import merge
from toxbench.harness.run.runner import execute
from toxbench.harness.spec.runspec import GenerationSettings, RunSpec


def _spec(model_dir, out, **kw):
    base = dict(model=str(model_dir), tasks=("wikitext", "wikitext103"), limit=2, max_length=64, batch_size=4,
                output_dir=str(out), device="cpu")
    base.update(kw)
    return RunSpec(**base)


def _comparable(results):
    return {t: {"n": r["n"], "metrics": r["metrics"], "protocol": r["protocol"]} for t, r in results["tasks"].items()}


def test_run_dir_layout_and_skip(tiny_llama_dir, tmp_path, cache_dir):
    spec = _spec(tiny_llama_dir, tmp_path / "runs")
    run_dir = execute(spec, progress=False)
    assert run_dir.name == spec.run_id()
    for f in ("run_spec.json", "env.json", "results.json", "samples_wikitext.jsonl", "samples_wikitext103.jsonl"):
        assert (run_dir / f).is_file(), f
    res = json.loads((run_dir / "results.json").read_text())
    assert res["completed"] and res["fingerprint"] == spec.fingerprint()
    assert res["protocol"]["intervention"]["name"] == "none"
    assert res["protocol"]["model"]["fingerprint"]
    ppl = res["tasks"]["wikitext"]["metrics"]["word_perplexity"]
    assert ppl["value"] > 1 and ppl["ci"] is not None
    assert res["tasks"]["wikitext"]["protocol"]["data_hash"]["file_sha256"]
    env = json.loads((run_dir / "env.json").read_text())
    assert "torch" in env["versions"] and "lm_eval" in env["versions"]
    # the same spec again: nothing recomputed
    calls = []
    orig = HookedLM._model_call
    try:
        HookedLM._model_call = lambda self, *a, **k: calls.append(1) or orig(self, *a, **k)
        assert execute(spec, progress=False) == run_dir
    finally:
        HookedLM._model_call = orig
    assert calls == []


def test_killed_run_resumes_to_same_results(tiny_llama_dir, tmp_path, cache_dir, monkeypatch):
    clean = execute(_spec(tiny_llama_dir, tmp_path / "a"), progress=False)
    spec = _spec(tiny_llama_dir, tmp_path / "b")
    orig = HookedLM._model_call

    results_file = tmp_path / "b" / spec.run_id() / "results.json"

    def dying(self, *a, **k):
        # killed in the middle of the second task, once the first one has been saved
        if results_file.is_file() and "wikitext" in json.loads(results_file.read_text()).get("tasks", {}):
            raise KeyboardInterrupt
        return orig(self, *a, **k)

    monkeypatch.setattr(HookedLM, "_model_call", dying)
    with pytest.raises(KeyboardInterrupt):
        execute(spec, progress=False)
    partial = json.loads(results_file.read_text())
    assert partial["completed"] is False and list(partial["tasks"]) == ["wikitext"]
    monkeypatch.setattr(HookedLM, "_model_call", orig)
    resumed = execute(spec, progress=False)
    a = json.loads((clean / "results.json").read_text())
    b = json.loads((resumed / "results.json").read_text())
    assert b["completed"]
    assert _comparable(a) == _comparable(b)


def test_force_recomputes(tiny_llama_dir, tmp_path, cache_dir):
    spec = _spec(tiny_llama_dir, tmp_path / "runs", tasks=("wikitext",), limit=1)
    execute(spec, progress=False)
    calls = []
    orig = HookedLM._model_call
    try:
        HookedLM._model_call = lambda self, *a, **k: calls.append(1) or orig(self, *a, **k)
        execute(spec, force=True, progress=False)
    finally:
        HookedLM._model_call = orig
    assert calls


def test_shards_merge_to_unsharded(tiny_llama_dir, tmp_path, cache_dir):
    spec = _spec(tiny_llama_dir, tmp_path / "full", tasks=("wikitext",), limit=3)
    full = json.loads((execute(spec, progress=False) / "results.json").read_text())
    shard_dirs = [execute(_spec(tiny_llama_dir, tmp_path / "shards", tasks=("wikitext",), limit=3, shard=(i, 2)),
                          progress=False) for i in range(2)]
    merged_dir = merge(shard_dirs, tmp_path / "merged")
    merged = json.loads((merged_dir / "results.json").read_text())
    assert merged_dir.name == spec.run_id()
    assert _comparable(merged) == _comparable(full)


def test_fingerprint_ignores_speed_settings():
    a = RunSpec(batch_size=4, device="cpu", output_dir="x", dtype="float32", data_dir="/a", cache_dir="/c")
    b = RunSpec(batch_size=64, device="cuda", output_dir="y", dtype="float32", data_dir="/b", cache_dir="/d")
    assert a.fingerprint() == b.fingerprint()
    assert RunSpec(seed=1).fingerprint() != RunSpec(seed=2).fingerprint()
    assert RunSpec(intervention="aura").run_id() != RunSpec().run_id()
    assert RunSpec.from_dict(RunSpec(tasks=("a", "b"), shard=(0, 2)).to_dict()) == RunSpec(tasks=("a", "b"), shard=(0, 2))


def test_auto_dtype_resolves_per_machine_and_is_part_of_the_identity(monkeypatch):
    from toxbench.harness.core import hardware

    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: False)
    avx2 = RunSpec(dtype="auto", device="cpu")
    assert avx2.resolved_dtype() == "float32" and avx2.fingerprint() == RunSpec(dtype="float32").fingerprint()
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: True)
    assert RunSpec(dtype="auto", device="cpu").resolved_dtype() == "bfloat16"
    assert RunSpec(dtype="auto", device="cpu").fingerprint() == RunSpec(dtype="bfloat16").fingerprint()
    assert RunSpec(dtype="bfloat16").fingerprint() != RunSpec(dtype="float32").fingerprint()


def test_native_bf16_follows_the_kernel_caps(monkeypatch):
    from toxbench.harness.core import hardware

    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    monkeypatch.setattr(hardware, "aten_capability", lambda: "AVX512")
    for var in hardware.KERNEL_ENV:
        monkeypatch.delenv(var, raising=False)
    assert hardware.cpu_native_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not hardware.cpu_native_bf16()  # the AVX2 emulation the CI gate is checked under
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr(hardware, "aten_capability", lambda: "AVX2")
    assert not hardware.cpu_native_bf16()
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr(hardware, "aten_capability", lambda: "AVX512")
    assert not hardware.cpu_native_bf16()  # AVX-512 without BF16 instructions emulates bf16


def test_shards_of_a_user_data_file_run_merge_to_unsharded(tiny_llama_dir, tmp_path, cache_dir):
    """`rtp --data FILE` shards: merge reads the run's own file (not the hub) and equals the unsharded run."""
    from toxbench.harness.core.io import sha256_file

    rows = [{"prompt": {"text": t, "toxicity": tox}} for t, tox in
            [("the film was", 0.1), ("you are a", 0.7), ("the city river", 0.2), ("a b c", 0.9), ("we went", 0.3)]]
    data = tmp_path / "my_rtp.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kw = dict(tasks=("rtp",), limit=None, data=str(data), data_sha256=sha256_file(data), scorer="profanity-check",
              generation=GenerationSettings(k=2, max_new_tokens=3))
    spec = _spec(tiny_llama_dir, tmp_path / "full", **kw)
    full = json.loads((execute(spec, progress=False) / "results.json").read_text())
    shard_dirs = [execute(_spec(tiny_llama_dir, tmp_path / "shards", shard=(i, 2), **kw), progress=False)
                  for i in range(2)]
    merged = json.loads((merge(shard_dirs, tmp_path / "merged") / "results.json").read_text())
    assert merged["tasks"]["rtp"]["n"] == 5
    assert _comparable(merged) == _comparable(full)


def test_env_records_the_threads_actually_used(tiny_llama_dir, tmp_path, cache_dir):
    import torch

    before = torch.get_num_threads()
    try:
        run_dir = execute(_spec(tiny_llama_dir, tmp_path, tasks=("wikitext",), limit=1, threads=1), progress=False)
        env = json.loads((run_dir / "env.json").read_text())
        assert env["torch_threads"] == 1 and env["kernels"]["aten"]  # and the kernel set the numbers came from
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_generation_shards_decode_the_unsharded_batches(tiny_llama_dir, tmp_path, cache_dir, monkeypatch, dtype):
    """Issue 27.5: a shard decodes whole batches of the unsharded run's plan (fp32 matmuls are not row-invariant
    across batch shapes), so sharded + merged == unsharded, samples included, under bf16 and fp32."""
    from toxbench.harness.run import generation
    from toxbench.harness.core.io import sha256_file

    texts = ["the film was", "you are a", "the city river", "a b c", "we went", "the old man said that",
             "she is", "good day to you and", "the team"]
    data = tmp_path / "my_rtp.jsonl"
    data.write_text("".join(json.dumps({"prompt": {"text": t, "toxicity": 0.1 * i}}) + "\n"
                            for i, t in enumerate(texts)))
    kw = dict(tasks=("rtp",), limit=None, data=str(data), data_sha256=sha256_file(data), scorer="profanity-check",
              generation=GenerationSettings(k=3, max_new_tokens=4), batch_size=2, dtype=dtype)
    batches: list[list[tuple]] = []
    orig = generation._BatchRunner.run

    def spy(self, prompts, keys, k):
        batches[-1].append(tuple(keys))
        return orig(self, prompts, keys, k)

    monkeypatch.setattr(generation._BatchRunner, "run", spy)
    batches.append([])
    full_dir = execute(_spec(tiny_llama_dir, tmp_path / "full", **kw), progress=False)
    shard_dirs = []
    for i in range(3):
        batches.append([])
        shard_dirs.append(execute(_spec(tiny_llama_dir, tmp_path / "shards", shard=(i, 3), **kw), progress=False))
    assert sorted(b for s in batches[1:] for b in s) == sorted(batches[0])
    merged_dir = merge(shard_dirs, tmp_path / "merged")
    assert merged_dir.name == full_dir.name
    assert _comparable(json.loads((merged_dir / "results.json").read_text())) == \
        _comparable(json.loads((full_dir / "results.json").read_text()))
    read = lambda d: [json.loads(x)["resps"] for x in (d / "samples_rtp.jsonl").read_text().splitlines()]  # noqa: E731
    assert read(merged_dir) == read(full_dir)


def test_the_data_dir_reaches_tasks_through_their_config_not_the_environment(tiny_llama_dir, tmp_path, cache_dir,
                                                                            monkeypatch, data_dir):
    """Issue 23: a run's --data-dir goes to the task data loaders in the task metadata; the process environment
    is left as it was (no TOXBENCH_DATA written at run time)."""
    import os
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data_dir / "wikitext" / "wikitext-2-raw", copy / "wikitext" / "wikitext-2-raw")
    monkeypatch.setenv("TOXBENCH_DATA", str(tmp_path / "nowhere"))
    run = execute(_spec(tiny_llama_dir, tmp_path / "runs", tasks=("wikitext",), limit=1, data_dir=str(copy)),
                  progress=False)
    assert os.environ["TOXBENCH_DATA"] == str(tmp_path / "nowhere")
    res = json.loads((run / "results.json").read_text())
    assert res["tasks"]["wikitext"]["protocol"]["data_hash"]["file_sha256"]
