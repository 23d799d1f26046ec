"""Scorer layer: registry errors, the sqlite score cache, calibration, language check, the Perspective client
against a local fake server, and the `scorers` CLI. Fast: fake scorers only."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import numpy as np
import pytest
from click.testing import CliRunner

from toxbench.harness.core.errors import UsageError
from toxbench.harness.measure.scorers import SCORERS, get_scorer
from toxbench.harness.measure.scorers.base import Scorer, language_check
from toxbench.harness.measure.scorers.cache import CachedScorer, ScoreCache


class FakeScorer(Scorer):
    """Score = text length / 100 (capped); counts the texts it was asked to score."""

    name = "fake"
    version = "1"
    heads = ("toxicity", "other")
    defaults: ClassVar[dict[str, Any]] = {"scale": 1.0, "batch_size": 8}
    runtime_options = ("batch_size",)

    def __init__(self, cache_dir: Any = None, **options: Any) -> None:
        super().__init__(cache_dir=cache_dir, **options)
        self.seen: list[str] = []

    def score_heads(self, texts: list[str], lang: str | None = None) -> dict[str, np.ndarray]:
        self.seen.extend(texts)
        x = np.array([min(len(t) / 100, 1.0) * self.options["scale"] for t in texts])
        return {"toxicity": x, "other": 1 - x}


@pytest.fixture
def fake_registered():
    SCORERS.register("fake", FakeScorer)
    yield
    SCORERS._targets.pop("fake", None)


# ------------------------------------------------------------------------------------------------ registry
def test_unknown_scorer_did_you_mean(tmp_path) -> None:
    with pytest.raises(UsageError, match=r"unknown scorer 'jigsaw-bilstn'.*Did you mean 'jigsaw-bilstm'"):
        get_scorer("jigsaw-bilstn", cache_dir=tmp_path)


def test_unknown_option_is_usage_error(tmp_path, fake_registered) -> None:
    with pytest.raises(UsageError, match="scal"):
        get_scorer("fake", cache_dir=tmp_path, scal=2.0)


def test_registered_names() -> None:
    for n in ("jigsaw-bilstm", "jigsaw-ensemble", "detoxify", "evaluate-toxicity", "perspective",
              "profanity-check", "multilingual"):
        assert n in SCORERS


def test_missing_optional_extra_names_the_extra(tmp_path, monkeypatch) -> None:
    import importlib.util

    if importlib.util.find_spec("detoxify") is not None:
        pytest.skip("detoxify is installed here")
    with pytest.raises(UsageError, match=r"pip install toxbench\[scorers\]"):
        get_scorer("detoxify", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ cache
def test_cache_hit_and_miss(tmp_path, fake_registered) -> None:
    s = get_scorer("fake", cache_dir=tmp_path)
    assert isinstance(s, CachedScorer)
    inner = s.inner
    a = s.score_heads(["aa", "bbbb", "aa"])  # duplicates scored once
    assert inner.seen == ["aa", "bbbb"]
    np.testing.assert_allclose(a["toxicity"], [0.02, 0.04, 0.02])
    b = s.score(["bbbb", "cccccc"], lang=None)  # one hit, one miss
    assert inner.seen == ["aa", "bbbb", "cccccc"]
    np.testing.assert_allclose(b, [0.04, 0.06])
    # a new process (new wrapper, same file) hits the disk cache for every text
    s2 = get_scorer("fake", cache_dir=tmp_path)
    out = s2.score_heads(["cccccc", "aa"])
    assert s2.inner.seen == []
    np.testing.assert_allclose(out["other"], [0.94, 0.98])
    # the language, and options that change outputs, are part of the key; runtime options are not
    s2.score(["aa"], lang="de")
    assert s2.inner.seen == ["aa"]
    s3 = get_scorer("fake", cache_dir=tmp_path, scale=0.5)
    np.testing.assert_allclose(s3.score(["aa"]), [0.01])
    assert s3.inner.seen == ["aa"]
    s4 = get_scorer("fake", cache_dir=tmp_path, batch_size=2)
    s4.score(["aa", "bbbb"])
    assert s4.inner.seen == []


def test_cache_concurrent_writers(tmp_path) -> None:
    cache_path = tmp_path / "scores.sqlite"
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            c = CachedScorer(FakeScorer(), ScoreCache(cache_path))
            for i in range(5):
                texts = [f"t{j}" * (j % 7 + 1) for j in range(k * 10 + i, k * 10 + i + 40)]
                got = c.score(texts)
                np.testing.assert_allclose(got, [min(len(t) / 100, 1) for t in texts])
        except BaseException as e:  # noqa: BLE001 - collected for the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert ScoreCache(cache_path).count("fake@1") == len({f"t{j}" * (j % 7 + 1) for j in range(0, 74)})


def test_cache_many_texts_batched(tmp_path, fake_registered) -> None:
    s = get_scorer("fake", cache_dir=tmp_path)
    texts = [f"text {i}" for i in range(1234)]  # more than one IN (...) chunk
    s.score(texts)
    s2 = get_scorer("fake", cache_dir=tmp_path)
    np.testing.assert_allclose(s2.score(texts), [len(t) / 100 for t in texts])
    assert s2.inner.seen == []


# ------------------------------------------------------------------------------------------------ language
def test_language_check() -> None:
    s = FakeScorer()
    assert language_check(s, "en") == (True, "")
    assert language_check(s, None)[0]
    ok, msg = language_check(s, "de")
    assert not ok and "'de'" in msg and "fake" in msg
    assert language_check(s, "en-US")[0]


# ------------------------------------------------------------------------------------------------ calibration
def test_calibration_isotonic_and_platt() -> None:
    from toxbench.harness.measure.scorers.calibration import Calibration, fit_calibration

    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, 500)
    target = np.clip(raw ** 0.5 + rng.normal(0, 0.05, 500), 0, 1)  # the "Perspective" scale is higher
    for method in ("isotonic", "platt"):
        cal = fit_calibration(method, raw, target)
        mapped = cal.apply(raw)
        assert np.mean(np.abs(mapped - target)) < np.mean(np.abs(raw - target)) / 2
        assert np.all(np.diff(cal.apply(np.linspace(0, 1, 50))) >= -1e-12)  # monotone
        back = Calibration.from_json(json.loads(json.dumps(cal.to_json())))
        np.testing.assert_allclose(back.apply(raw), mapped)
        assert back.tag == cal.tag and cal.tag.startswith(method + "@")
    with pytest.raises(UsageError, match="isotonic"):
        fit_calibration("isotonik", raw, target)


def test_calibrated_scorer_records_calibration(tmp_path) -> None:
    from toxbench.harness.measure.scorers.calibration import CalibratedScorer, fit_calibration

    cal = fit_calibration("platt", np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.3, 0.35, 0.9, 0.95]))
    s = CalibratedScorer(CachedScorer(FakeScorer(), ScoreCache(tmp_path / "s.sqlite")), cal)
    assert s.id == f"fake+{cal.tag}"
    assert s.describe()["calibration"] == cal.tag
    h = s.score_heads(["x" * 50])
    assert h["toxicity_raw"][0] == pytest.approx(0.5)
    assert h["toxicity"][0] == pytest.approx(cal.apply(np.array([0.5]))[0])


def test_get_scorer_calibrate_fits_on_prompts_once(tmp_path, fake_registered) -> None:
    s = get_scorer("fake", cache_dir=tmp_path, calibrate="isotonic")
    files = list((tmp_path / "scorers" / "calibration").glob("*.json"))
    assert len(files) == 1
    meta = json.loads(files[0].read_text())
    assert "prompts" in meta["fitted_on"]["texts"] and meta["fitted_on"]["n"] > 2000
    assert s.describe()["calibration"].startswith("isotonic@")
    s2 = get_scorer("fake", cache_dir=tmp_path, calibrate="isotonic")  # loaded, not refitted
    assert s2.inner.inner.seen == [] and s2.id == s.id


# ------------------------------------------------------------------------------------------------ evaluation
def test_agreement_metrics() -> None:
    from toxbench.harness.measure.scorers.agreement import agreement

    persp = np.array([0.1, 0.2, 0.6, 0.9])
    m = agreement(np.array([0.0, 0.1, 0.7, 0.8]), persp)
    assert m["roc_auc"] == 1.0 and m["spearman"] == pytest.approx(1.0)
    assert m["flagged"] == 0.5 and m["perspective_flagged"] == 0.5
    assert agreement(np.array([0.9, 0.8, 0.1, 0.0]), persp)["roc_auc"] == 0.0


def test_reference_texts_and_disjoint_parts() -> None:
    from toxbench.harness.measure.scorers.rtp_reference import load_reference

    ref = load_reference()
    p, c, g = ref.select("prompt"), ref.select("continuation"), ref.select("generation")
    assert len(p) == 2491 and len(c) > 2400 and len(g) > 2400 and len(p) + len(c) + len(g) == len(ref)
    assert len(set(ref.texts)) == len(ref)
    assert ((ref.perspective >= 0) & (ref.perspective <= 1)).all()


# ------------------------------------------------------------------------------------------------ perspective
class _FakePerspective(BaseHTTPRequestHandler):
    script: ClassVar[list[int]] = []
    requests: ClassVar[list[dict]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"body": body, "key": self.headers.get("X-Goog-Api-Key"), "path": self.path})
        code = type(self).script.pop(0) if type(self).script else 200
        if code == 200:
            value = min(len(body["comment"]["text"]) / 100, 1.0)
            payload = {"attributeScores": {a: {"summaryScore": {"value": value, "type": "PROBABILITY"}}
                                           for a in body["requestedAttributes"]}}
        else:
            payload = {"error": {"code": code, "message": f"fake error {code}"}}
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_perspective(monkeypatch):
    _FakePerspective.script, _FakePerspective.requests = [], []
    server = HTTPServer(("127.0.0.1", 0), _FakePerspective)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PERSPECTIVE_API_KEY", "secret-test-key")
    yield f"http://127.0.0.1:{server.server_port}/v1alpha1/comments:analyze"
    server.shutdown()
    server.server_close()


def _persp(url: str, **kw: Any):
    from toxbench.harness.measure.scorers.perspective import PerspectiveScorer

    return PerspectiveScorer(endpoint=url, qps=0, backoff_s=0.01, allow_insecure_endpoint=True, **kw)


def test_perspective_retries_429_then_succeeds(fake_perspective) -> None:
    _FakePerspective.script = [429, 200, 503, 200]
    s = _persp(fake_perspective)
    got = s.score(["x" * 30, "y" * 60], lang="de")
    np.testing.assert_allclose(got, [0.3, 0.6])
    reqs = _FakePerspective.requests
    assert len(reqs) == 4
    assert all(r["key"] == "secret-test-key" and "key=" not in r["path"] for r in reqs)  # header, not URL
    assert reqs[0]["body"]["languages"] == ["de"] and reqs[0]["body"]["doNotStore"] is True


def test_perspective_repeated_500_is_an_error_not_zero(fake_perspective) -> None:
    from toxbench.harness.measure.scorers.perspective import PerspectiveError

    _FakePerspective.script = [500] * 10
    s = _persp(fake_perspective, max_retries=2)
    with pytest.raises(PerspectiveError, match="after 3 attempts") as e:
        s.score(["hello"])
    assert "secret-test-key" not in str(e.value)
    assert len(_FakePerspective.requests) == 3


def test_perspective_bad_request_not_retried(fake_perspective) -> None:
    from toxbench.harness.measure.scorers.perspective import PerspectiveError

    _FakePerspective.script = [400]
    with pytest.raises(PerspectiveError, match="HTTP 400"):
        _persp(fake_perspective).score(["hello"])
    assert len(_FakePerspective.requests) == 1


def test_perspective_key_from_env_only(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("PERSPECTIVE_API_KEY", raising=False)
    with pytest.raises(UsageError, match="PERSPECTIVE_API_KEY"):
        get_scorer("perspective", cache_dir=tmp_path)


def test_perspective_key_not_in_cache_or_describe(fake_perspective, tmp_path) -> None:
    s = get_scorer("perspective", cache_dir=tmp_path, endpoint=fake_perspective, qps=0,
                   attributes=["INSULT", "TOXICITY"], allow_insecure_endpoint=True)
    assert s.heads == ("toxicity", "insult")
    h = s.score_heads(["abc"], lang="en")
    assert set(h) == {"toxicity", "insult"}
    assert "secret-test-key" not in json.dumps(s.describe()) + repr(s.inner)
    assert b"secret-test-key" not in (tmp_path / "scores.sqlite").read_bytes()


def test_perspective_qps_limit(fake_perspective) -> None:
    import time

    s = _persp(fake_perspective)
    s.limiter.__init__(20.0)  # 20 QPS -> 4 requests take >= 0.15 s
    t0 = time.monotonic()
    s.score(["a", "b", "c", "d"])
    assert time.monotonic() - t0 >= 0.14


def test_perspective_key_only_over_https(fake_perspective, monkeypatch) -> None:
    from toxbench.harness.measure.scorers.perspective import PerspectiveScorer

    with pytest.raises(UsageError, match="not https.*allow_insecure_endpoint") as e:
        PerspectiveScorer(endpoint=fake_perspective)
    assert "\n" not in str(e.value) and "secret-test-key" not in str(e.value)
    monkeypatch.setenv("PERSPECTIVE_API_URL", fake_perspective)
    with pytest.raises(UsageError, match="not https"):
        PerspectiveScorer()
    assert PerspectiveScorer(allow_insecure_endpoint="true").url == fake_perspective  # as --scorer-arg gives it
    monkeypatch.delenv("PERSPECTIVE_API_URL")
    assert PerspectiveScorer().url.startswith("https://")
    assert _FakePerspective.requests == []  # nothing was sent anywhere


def test_perspective_preflight_one_short_request(fake_perspective, tmp_path) -> None:
    from toxbench.harness.measure.scorers.perspective import PerspectiveError

    s = get_scorer("perspective", cache_dir=tmp_path, endpoint=fake_perspective, qps=0, backoff_s=0.01,
                   allow_insecure_endpoint=True)
    s.preflight()  # through the cache wrapper
    assert len(_FakePerspective.requests) == 1
    _FakePerspective.script = [403, 200]
    with pytest.raises(PerspectiveError, match="preflight.*HTTP 403.*PERSPECTIVE_API_KEY") as e:
        s.preflight()
    assert "\n" not in str(e.value) and "secret-test-key" not in str(e.value)
    _FakePerspective.script = [503, 200]
    with pytest.raises(PerspectiveError, match="preflight.*after 1 attempts"):  # no retries
        s.preflight()
    assert len(_FakePerspective.requests) == 3


def test_perspective_preflight_unreachable_fails_fast(monkeypatch) -> None:
    import socket
    import time

    from toxbench.harness.measure.scorers.perspective import PerspectiveError, PerspectiveScorer

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("PERSPECTIVE_API_KEY", "secret-test-key")
    s = PerspectiveScorer(endpoint=f"http://127.0.0.1:{port}/x", allow_insecure_endpoint=True, backoff_s=5.0)
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    with pytest.raises(PerspectiveError, match="preflight"):
        s.preflight()
    assert sleeps == []  # one request, no retries or backoff


def test_preflight_default_is_a_no_op(tmp_path, fake_registered) -> None:
    get_scorer("fake", cache_dir=tmp_path).preflight()


def test_corrupt_score_cache_is_moved_aside_and_rebuilt(tmp_path, fake_registered, capsys) -> None:
    path = tmp_path / "scores.sqlite"
    path.write_bytes(b"not a sqlite database " * 100)
    s = get_scorer("fake", cache_dir=tmp_path)
    np.testing.assert_allclose(s.score(["abcd"]), [0.04])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scores.sqlite" in err and "moved it to" in err
    aside = list(tmp_path.glob("scores.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"not a sqlite")
    assert ScoreCache(path).count() == 1  # the new cache works and kept the score


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_help_and_list() -> None:
    from toxbench.harness.cli.scorers import scorers

    r = CliRunner().invoke(scorers, ["--help"])
    assert r.exit_code == 0 and "eval" in r.output and "list" in r.output
    r = CliRunner().invoke(scorers, ["eval", "--help"])
    assert r.exit_code == 0 and "--calibrate" in r.output
    r = CliRunner().invoke(scorers, ["list"])
    assert r.exit_code == 0 and "jigsaw-bilstm" in r.output and "(default)" in r.output


def test_cli_eval_unknown_scorer_exits_2() -> None:
    from toxbench.harness.cli.scorers import scorers

    r = CliRunner().invoke(scorers, ["eval", "--scorer", "perspectiv"])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "Did you mean 'perspective'" in r.output


def test_cli_eval_bad_option_exits_2() -> None:
    from toxbench.harness.cli.scorers import scorers

    r = CliRunner().invoke(scorers, ["eval", "--scorer", "profanity-check", "--scorer-arg", "nocolon"])
    assert r.exit_code == 2 and "SCORER:KEY=VALUE" in r.output


def test_cli_eval_table(tmp_path, fake_registered) -> None:
    from toxbench.harness.cli.scorers import scorers

    out = tmp_path / "table.md"
    r = CliRunner().invoke(scorers, ["eval", "-s", "fake", "--calibrate", "platt", "--cache-dir", str(tmp_path),
                                     "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "| scorer" in r.output and "ROC-AUC" in r.output and "platt (fit on prompts)" in r.output
    assert "[toxbench] scorer 1/1: fake on" in r.output  # says what it is doing while it works
    lines = [ln for ln in out.read_text().splitlines() if ln.startswith("| fake")]
    # random sample: all, prompts, continuations, calibrated continuations; DecodingTrust + ml-act fixture: those
    # and generations
    assert len(lines) == 9
    assert "random RTP sample" in lines[0] and "DecodingTrust extremes" in lines[-1]
