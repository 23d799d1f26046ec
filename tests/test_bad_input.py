"""Issue 15: every bad input, damaged run dir and concurrent run, through the CLI on a tiny in-process model.

Each row of the issue's table: exit code 2, one line naming the bad value, no traceback, no run dir created (and
no model loaded); for the damage cases, nothing computed before is lost.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from toxbench.harness.spec import lock as lock_mod
from toxbench.harness.cli import main

PROMPTS = [{"prompt": {"text": "the film was", "toxicity": 0.1}}, {"prompt": {"text": "you are a", "toxicity": 0.7}},
           {"prompt": {"text": "the city river", "toxicity": 0.2}}]


class ModelLoaded(Exception):
    """Raised instead of loading a model: a test that sees it got past validation."""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny model, an RTP file, a cache dir and one complete run (copied by the damage tests)."""
    from tiny import save_tiny

    root = tmp_path_factory.mktemp("bad_input")
    model = save_tiny(root / "tiny", "llama")
    data = root / "rtp.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in PROMPTS))
    e = {"model": model, "data": data, "cache": root / "cache", "good": root / "good"}
    res = CliRunner().invoke(main, _args(e, e["good"]))
    assert res.exit_code == 0, res.output
    return e


def _args(e, out, *extra, data=None):
    return ["run", "--model", str(e["model"]), "--device", "cpu", "--tasks", "rtp", "--data", str(data or e["data"]),
            "--scorer", "profanity-check", "--k", "2", "--max-new-tokens", "3", "--batch-size", "1",
            "--cache-dir", str(e["cache"]), "-o", str(out), *extra]


@pytest.fixture
def no_model(monkeypatch):
    def refuse(*a, **k):
        raise ModelLoaded

    monkeypatch.setattr("toxbench.harness.core.models.load_model", refuse)


def _one_line_exit2(res, *needles):
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert "Traceback" not in res.output
    for n in needles:
        assert str(n) in lines[0], lines[0]
    return lines[0]


def _no_run_dir(out: Path):
    assert not out.exists() or not any(p.is_dir() for p in out.iterdir()), list(out.iterdir())


def _bad(e, tmp_path, extra=(), needles=(), data=None, env_vars=None):
    out = tmp_path / "runs"
    res = CliRunner().invoke(main, _args(e, out, *extra, data=data), env=env_vars or {})
    line = _one_line_exit2(res, *needles)
    _no_run_dir(out)
    return line


def _copy_good(e, tmp_path) -> tuple[Path, Path]:
    out = tmp_path / "runs"
    shutil.copytree(e["good"], out)
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return out, run_dir


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}


# -- row: --intervention-state that is not safetensors --------------------------------------------------------
def test_state_not_safetensors(env, tmp_path, no_model):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a safetensors file, just some bytes" * 4)
    _bad(env, tmp_path, ["-i", "aura", "--intervention-state", str(junk)], [junk.name, "not a safetensors"])


# -- rows: --data empty / binary (+ malformed JSON, missing fields: file:line) -----------------------------------
@pytest.mark.parametrize("content,needles", [
    (b"", ["empty"]),
    (b"\n  \n", ["empty"]),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", [":1", "binary"]),
    ('{"prompt": {"text": "ok"}}\n\xe9t\xe9\n'.encode("latin-1"), [":2", "UTF-8"]),
    (b'{"prompt": {"text": "ok"}}\n{"prompt": \n', [":2", "malformed JSON"]),
    (b'{"prompt": {"text": "ok"}}\n\n{"text": "no prompt"}\n', [":3", "prompt.text"]),
    (b'{"prompt": {"text": "ok", "toxicity": "high"}}\n', [":1", "prompt.toxicity"]),
])
def test_bad_data_file(env, tmp_path, no_model, content, needles):
    f = tmp_path / "mine.jsonl"
    f.write_bytes(content)
    _bad(env, tmp_path, data=f, needles=[f.name, *needles])


# -- rows: generation settings out of range -------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value", [
    ("--k", "0"), ("--max-new-tokens", "-1"), ("--max-new-tokens", "0"), ("--top-p", "2"), ("--top-p", "0"),
    ("--top-p", "nan"), ("--temperature", "-0.5"), ("--top-k", "-1"), ("--limit", "0"), ("--batch-size", "0"),
])
def test_generation_setting_out_of_range(env, tmp_path, no_model, flag, value):
    line = _bad(env, tmp_path, [flag, value], [flag])
    assert value in line or str(float(value)) in line


def test_temperature_zero_is_greedy_and_allowed(env, tmp_path, no_model):
    res = CliRunner().invoke(main, _args(env, tmp_path / "runs", "--temperature", "0"))
    assert isinstance(res.exception, ModelLoaded), res.output  # validation passed; the model was next


# -- rows: -o a regular file / an unwritable path -----------------------------------------------------------------
def test_output_dir_is_a_file(env, tmp_path, no_model):
    f = tmp_path / "afile"
    f.write_text("x")
    res = CliRunner().invoke(main, _args(env, f))
    _one_line_exit2(res, str(f), "not a directory")
    res = CliRunner().invoke(main, _args(env, f / "below"))
    _one_line_exit2(res, str(f / "below"), "is a file")
    assert f.read_text() == "x"


def test_output_dir_not_writable(env, tmp_path, no_model):
    target = Path("/proc/toxbench-cannot-write-here/runs")  # not creatable, even by root
    res = CliRunner().invoke(main, _args(env, target))
    _one_line_exit2(res, str(target), "not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_output_dir_read_only(env, tmp_path, no_model):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    _one_line_exit2(CliRunner().invoke(main, _args(env, ro / "runs")), "not writable")


# -- rows: corrupted results.json / run_spec.json ---------------------------------------------------------------------
def test_corrupted_results_json(env, tmp_path, no_model):
    out, run_dir = _copy_good(env, tmp_path)
    (run_dir / "results.json").write_text('{"tasks": {"rtp": {"n": 3, "metr')
    before = _snapshot(run_dir)
    _one_line_exit2(CliRunner().invoke(main, _args(env, out)), "results.json", "corrupted", "--force")
    _one_line_exit2(CliRunner().invoke(main, ["show", str(run_dir)]), "results.json", "corrupted")
    _one_line_exit2(CliRunner().invoke(main, ["show", "--json", str(run_dir)]), "results.json")
    assert _snapshot(run_dir) == before  # nothing lost, nothing half-rewritten


def test_corrupted_results_json_force_recomputes(env, tmp_path):
    out, run_dir = _copy_good(env, tmp_path)
    (run_dir / "results.json").write_bytes(b"\x00\x00garbage")
    res = CliRunner().invoke(main, _args(env, out, "--force"))
    assert res.exit_code == 0, res.output
    assert json.loads((run_dir / "results.json").read_text())["completed"] is True


def test_corrupted_run_spec_json(env, tmp_path, no_model):
    out, run_dir = _copy_good(env, tmp_path)
    (run_dir / "run_spec.json").write_text("{not json")
    before = _snapshot(run_dir)
    _one_line_exit2(CliRunner().invoke(main, _args(env, out)), "run_spec.json", "corrupted", "--force")
    assert _snapshot(run_dir) == before
    # the way out the message gives: delete it; the next run writes it again and keeps the results
    (run_dir / "run_spec.json").unlink()
    res = CliRunner().invoke(main, _args(env, out))
    assert res.exit_code == 0, res.output
    assert json.loads((run_dir / "run_spec.json").read_text())["run_id"] == run_dir.name
    assert (run_dir / "results.json").read_bytes() == before["results.json"]


# -- row: generations_*.jsonl cut mid-line ------------------------------------------------------------------------------
def test_torn_generations_line_is_cut_before_appending(env, tmp_path):
    out, run_dir = _copy_good(env, tmp_path)
    gen = run_dir / "generations_rtp.jsonl"
    full = gen.read_bytes()
    lines = full.splitlines(keepends=True)
    assert len(lines) == 3  # --batch-size 1: one line per prompt
    # killed while writing the last batch, before any results were written
    gen.write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    for f in ("results.json", "samples_rtp.jsonl"):
        (run_dir / f).unlink()
    res = CliRunner().invoke(main, _args(env, out))
    assert res.exit_code == 0, res.output
    after = gen.read_bytes()
    assert after.startswith(b"".join(lines[:2]))  # the finished batches are kept as they were
    assert [json.loads(x) for x in after.splitlines()] == [json.loads(x) for x in lines]  # no glued line
    good = json.loads((env["good"] / run_dir.name / "results.json").read_text())
    again = json.loads((run_dir / "results.json").read_text())
    assert again["tasks"]["rtp"]["metrics"] == good["tasks"]["rtp"]["metrics"]


def test_truncate_torn_tail_unit(tmp_path):
    from toxbench.harness.core.io import append_jsonl, read_jsonl, truncate_torn_tail

    f = tmp_path / "x.jsonl"
    f.write_bytes(b'{"a": 1}\n{"a": 2')
    assert truncate_torn_tail(f) == len(b'{"a": 2')
    assert truncate_torn_tail(f) == 0
    f.write_bytes(b'{"a": 1')  # a torn first (and only) line
    append_jsonl(f, [{"a": 3}])
    assert read_jsonl(f) == [{"a": 3}]


# -- row: corrupted score cache (recovered by the scorers' ScoreCache: reported, rebuilt, no generation lost) --------
def test_corrupted_score_cache_is_rebuilt(env, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "scores.sqlite").write_bytes(b"this is not a database" * 100)
    out, run_dir = _copy_good(env, tmp_path)
    for f in ("results.json", "samples_rtp.jsonl"):  # rescoring needed; the generations are cached
        (run_dir / f).unlink()
    gen_before = (run_dir / "generations_rtp.jsonl").read_bytes()
    args = _args(env, out)
    args[args.index("--cache-dir") + 1] = str(cache)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "scores.sqlite" in res.output and "Traceback" not in res.output
    assert (run_dir / "generations_rtp.jsonl").read_bytes() == gen_before
    assert json.loads((run_dir / "results.json").read_text())["completed"] is True


# -- rows: Perspective key missing / unreachable / not https: before any generation --------------------------------------
def test_perspective_without_key(env, tmp_path, no_model, monkeypatch):
    monkeypatch.delenv("PERSPECTIVE_API_KEY", raising=False)
    _bad(env, tmp_path, ["--scorer", "perspective"], ["PERSPECTIVE_API_KEY"])


def test_perspective_unreachable_fails_fast(env, tmp_path, no_model, monkeypatch):
    with socket.socket() as s:  # a local port nobody listens on: "offline" without the network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PERSPECTIVE_API_KEY", "test-key-not-real")
    monkeypatch.setenv("PERSPECTIVE_API_URL", f"https://127.0.0.1:{port}/v1alpha1/comments:analyze")
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    line = _bad(env, tmp_path, ["--scorer", "perspective"], [f"127.0.0.1:{port}"])
    assert sleeps == []  # one request with a short timeout: no retries, no backoff
    assert "test-key-not-real" not in line


def test_perspective_plain_http_refused(env, tmp_path, no_model, monkeypatch):
    monkeypatch.setenv("PERSPECTIVE_API_KEY", "test-key-not-real")
    monkeypatch.setenv("PERSPECTIVE_API_URL", "http://example.invalid/analyze")
    line = _bad(env, tmp_path, ["--scorer", "perspective"], ["http://example.invalid/analyze", "https"])
    assert "test-key-not-real" not in line


# -- row: a state file without model_fingerprint --------------------------------------------------------------------
def _state(path: Path, **meta) -> Path:
    import torch
    from safetensors.torch import save_file

    save_file({"model.layers.0.mlp.down_proj": torch.ones(4)}, str(path),
              metadata={k: json.dumps(v) for k, v in meta.items()})
    return path


def test_state_without_fingerprint_refused(env, tmp_path, no_model):
    st = _state(tmp_path / "state.safetensors", method="aura")
    _bad(env, tmp_path, ["-i", "aura", "--intervention-state", str(st)],
         [st.name, "model_fingerprint", "--allow-unfingerprinted-state"])
    res = CliRunner().invoke(main, _args(env, tmp_path / "runs", "-i", "aura", "--intervention-state", str(st),
                                         "--allow-unfingerprinted-state"))
    assert isinstance(res.exception, ModelLoaded), res.output  # the override gets past validation


def test_state_with_fingerprint_passes_validation(env, tmp_path, no_model):
    st = _state(tmp_path / "state.safetensors", method="aura", model_fingerprint="abc123")
    res = CliRunner().invoke(main, _args(env, tmp_path / "runs", "-i", "aura", "--intervention-state", str(st)))
    assert isinstance(res.exception, ModelLoaded), res.output


def test_state_for_an_intervention_without_state(env, tmp_path, no_model):
    st = _state(tmp_path / "state.safetensors", model_fingerprint="abc123")
    _bad(env, tmp_path, ["-i", "preprompt", "--intervention-state", str(st)], ["preprompt", "aura"])


# -- row: the same spec twice at once -----------------------------------------------------------------------------------
def test_second_process_on_same_spec_refuses(env, tmp_path, no_model):
    out, run_dir = _copy_good(env, tmp_path)
    before = _snapshot(run_dir)
    with lock_mod.run_lock(run_dir):  # another process on it (flock is per open file, so this process conflicts)
        res = CliRunner().invoke(main, _args(env, out))
        _one_line_exit2(res, f"pid {os.getpid()}", socket.gethostname(), "--wait")
    assert _snapshot(run_dir) == before
    assert not (run_dir / lock_mod.LOCK_NAME).exists()


def test_another_process_holds_the_run_then_dies(env, tmp_path, no_model):
    """A real second process: refused while it lives (named by pid); killed -9, its lock is taken over."""
    out, run_dir = _copy_good(env, tmp_path)
    before = _snapshot(run_dir)
    code = ("import sys, time\nfrom toxbench.harness.spec.lock import run_lock\n"
            f"with run_lock({str(run_dir)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n")
    other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        _one_line_exit2(CliRunner().invoke(main, _args(env, out)), f"pid {other.pid}", socket.gethostname())
    finally:
        other.kill()
        other.wait()
    assert json.loads((run_dir / lock_mod.LOCK_NAME).read_text())["pid"] == other.pid  # left behind by kill -9
    res = CliRunner().invoke(main, _args(env, out))  # complete run: nothing to compute, no model needed
    assert res.exit_code == 0, res.output
    assert _snapshot(run_dir) == before


def test_wait_waits_for_the_holder(env, tmp_path, monkeypatch):
    monkeypatch.setattr(lock_mod, "POLL_S", 0.05)
    out, run_dir = _copy_good(env, tmp_path)
    held, release = threading.Event(), threading.Event()

    def holder():
        with lock_mod.run_lock(run_dir):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    threading.Timer(0.5, release.set).start()
    t0 = time.monotonic()
    res = CliRunner().invoke(main, _args(env, out, "--wait"))
    t.join()
    assert res.exit_code == 0, res.output
    assert time.monotonic() - t0 >= 0.4
    assert "waiting for pid" in res.output


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_lock_file_of_a_dead_process_is_taken_over(env, tmp_path):
    out, run_dir = _copy_good(env, tmp_path)
    (run_dir / lock_mod.LOCK_NAME).write_text(json.dumps(
        {"pid": _dead_pid(), "host": socket.gethostname(), "started": "2020-01-01T00:00:00"}))
    res = CliRunner().invoke(main, _args(env, out))
    assert res.exit_code == 0, res.output
    assert not (run_dir / lock_mod.LOCK_NAME).exists()


def test_stale_lock_held_by_an_orphan_is_taken_over(env, tmp_path):
    """The recorded holder died but its descriptor lives on in another process (a forked child)."""
    out, run_dir = _copy_good(env, tmp_path)
    lock_file = run_dir / lock_mod.LOCK_NAME
    code = ("import fcntl, json, os, sys, time\n"
            f"fd = os.open({str(lock_file)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            f"os.write(fd, json.dumps({{'pid': {_dead_pid()}, 'host': {socket.gethostname()!r}}}).encode())\n"
            "print('held', flush=True)\ntime.sleep(60)\n")
    orphan = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert orphan.stdout.readline().strip() == "held"
        res = CliRunner().invoke(main, _args(env, out))
        assert res.exit_code == 0, res.output
        assert "stale lock" in res.output
    finally:
        orphan.kill()
        orphan.wait()


def test_live_holder_on_another_host_with_host_local_flock(tmp_path, monkeypatch):
    """Where flock does not reach across machines, a fresh heartbeat from another host still means "in use"."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / lock_mod.LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "other-machine", "started": "now"}))
    with pytest.raises(lock_mod.RunLocked, match="other-machine"):
        with lock_mod.run_lock(run_dir):
            pass
    old = time.time() - lock_mod.STALE_S - 10  # no heartbeat for longer than STALE_S: presumed dead
    os.utime(run_dir / lock_mod.LOCK_NAME, (old, old))
    with lock_mod.run_lock(run_dir):
        assert json.loads((run_dir / lock_mod.LOCK_NAME).read_text())["pid"] == os.getpid()


def test_failed_run_leaves_no_stub_dir(env, tmp_path, no_model):
    out = tmp_path / "runs"
    res = CliRunner().invoke(main, _args(env, out))
    assert isinstance(res.exception, ModelLoaded)
    _no_run_dir(out)


# -- suites over a shared file system: a locked run is done by its holder, not twice -------------------------------------
def test_suite_defers_a_locked_run_and_does_not_redo_it(env, tmp_path, monkeypatch):
    from toxbench.harness.spec.runspec import GenerationSettings, RunSpec
    from toxbench.harness.run.suite import Suite, run_suite
    from toxbench.harness.spec.rundir import RunDir

    monkeypatch.setattr(lock_mod, "POLL_S", 0.05)
    out, run_dir = _copy_good(env, tmp_path)
    spec = dataclasses.replace(RunDir(run_dir).load_spec(), output_dir=str(out))
    (run_dir / "results.json").rename(tmp_path / "results.json")  # "being computed by the other machine"
    other = RunSpec(**{**spec.__dict__, "generation": GenerationSettings(k=1, max_new_tokens=2)})
    calls = []

    def fake_execute(s, force=False, wait=False):
        calls.append(s.fingerprint())
        if s.fingerprint() == spec.fingerprint() and not wait:
            from toxbench.harness.run.runner import execute
            return execute(s, force=force)  # meets the lock: RunLocked
        return RunDir.for_spec(s).path

    def other_machine():
        with lock_mod.run_lock(run_dir):
            time.sleep(0.5)
            (tmp_path / "results.json").rename(run_dir / "results.json")  # it finished the run

    t = threading.Thread(target=other_machine)
    t.start()
    time.sleep(0.1)
    suite = Suite(name="t", path=tmp_path / "s.yaml", out=tmp_path / "lb.md", specs=[spec, other])
    res = run_suite(suite, execute=fake_execute, log=lambda m: None, leaderboard=False)
    t.join()
    assert calls == [spec.fingerprint(), other.fingerprint()]  # the locked run was not executed again
    assert run_dir in res.skipped and res.run_dirs[0] == run_dir


# -- toxbench show on a folder of runs; leaderboard after all the bad tries ----------------------------------------------
def test_show_folder_lists_runs(env, tmp_path):
    out, run_dir = _copy_good(env, tmp_path)
    res = CliRunner().invoke(main, ["show", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 run(s)" in res.output and run_dir.name in res.output and "[complete]" in res.output
    assert "toxic_fraction=" in res.output and "has no results.json" not in res.output
    rows = json.loads(CliRunner().invoke(main, ["show", "--json", str(out)]).output)
    assert rows[0]["status"] == "complete" and rows[0]["tasks"] == ["rtp"]
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_exit2(CliRunner().invoke(main, ["show", str(empty)]), "neither a run dir nor a folder of run dirs")


def test_leaderboard_after_bad_inputs_has_no_stubs(env, tmp_path, no_model, monkeypatch):
    monkeypatch.delenv("PERSPECTIVE_API_KEY", raising=False)
    out, _ = _copy_good(env, tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for extra in (["--k", "0"], ["--top-p", "2"], ["--max-new-tokens", "-1"], ["--scorer", "perspective"],
                  ["--data", str(empty)]):
        res = CliRunner().invoke(main, _args(env, out, *extra))
        assert res.exit_code == 2, res.output
    assert len([p for p in out.iterdir() if p.is_dir()]) == 1
    res = CliRunner().invoke(main, ["leaderboard", str(out), "--out", str(tmp_path / "lb.md"), "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "skipped" not in res.output


# -- lm-eval's "`pretrained` model kwarg is not of type `str`" warning is dropped at its logger ------------------------
def test_pretrained_not_str_warning_silenced():
    import toxbench.harness.run.adapter  # noqa: F401 - installs the filter

    logger = logging.getLogger("lm_eval.models.huggingface")
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)  # the runner quiets lm_eval's loggers; this test wants to see them
    try:
        logger.warning("`pretrained` model kwarg is not of type `str`. Many other model arguments may be ignored.")
        logger.warning("some other warning")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert [r.getMessage() for r in seen] == ["some other warning"]


def test_jsonl_rows_with_unicode_line_separators_round_trip(tmp_path):
    """Generated text can hold U+2028, U+0085 or a form feed: a cache line must still be one line."""
    from toxbench.harness.core.io import append_jsonl, read_jsonl

    f = tmp_path / "g.jsonl"
    rows = [{"key": "a", "samples": ["x\u2028y", "p\x85q", "f\x0cg", "r\rs"]}, {"key": "b", "samples": ["ok"]}]
    append_jsonl(f, rows)
    assert read_jsonl(f) == rows
