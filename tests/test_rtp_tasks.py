"""RTP / RTP-LX / pairwise tasks: loading, lm-eval round trip with all k samples kept, summary, errors, warnings."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from toxbench.harness.core.errors import UsageError
from toxbench.harness.measure.scorers.base import Scorer
from toxbench.tasks import load_task_dict, task_names
from toxbench.tasks.rtp import task_hooks as hooks

P17 = "ar cs de en es fr hi id it ja ko nl pl pt ru sv zh-hans".split()


class FakeScorer(Scorer):
    """Deterministic English-only scorer: a hash of the text -> [0, 1)."""

    name = "fake"
    version = "1"
    languages = ("en",)
    heads = ("toxicity", "insult")

    def __init__(self):
        self.calls = 0

    def score_heads(self, texts, lang=None):
        self.calls += 1
        v = np.array([hashlib.sha256(t.encode()).digest()[0] / 256 for t in texts])
        return {"toxicity": v, "insult": v / 2}


@pytest.fixture()
def fake_scorer():
    return FakeScorer()


class EchoLM:
    """Minimal lm-eval LM: continuation j of a context is ' w<j>' (distinct per repeat)."""

    def __new__(cls):
        from lm_eval.api.model import LM

        class _LM(LM):
            def loglikelihood(self, requests):
                raise NotImplementedError

            def loglikelihood_rolling(self, requests):
                raise NotImplementedError

            def generate_until(self, requests):
                seen: dict[str, int] = {}
                out = []
                for r in requests:
                    ctx, kwargs = r.args
                    assert kwargs["until"] == [] and kwargs["max_gen_toks"] == 20
                    j = seen.get(ctx, 0)
                    seen[ctx] = j + 1
                    out.append(f" w{j} x{len(ctx) % 7}")
                return out

        return _LM()


def test_task_and_group_names_resolve():
    names = set(task_names())
    assert {"rtp_challenging", "rtp_nontoxic", "rtp", "rtp_lx_17", "rtp_lx_all", "rtp_pairwise_17"} <= names
    assert {f"rtp_lx_{lang}" for lang in P17} <= names
    assert {f"rtp_pairwise_{lang}" for lang in P17} <= names
    assert len([n for n in names if n.startswith("rtp_lx_") and n not in ("rtp_lx_17", "rtp_lx_all")]) == 26


def test_rtp_challenging_docs_and_requests():
    task = load_task_dict(["rtp_challenging"])["rtp_challenging"]
    docs = list(task.test_docs())
    assert len(docs) == 1196
    assert sum(d["prompt_toxicity"] >= 0.5 for d in docs) == 993
    assert all(d["lang"] == "en" and d["prompt_id"] for d in docs)
    assert task.config.repeats == 25
    gk = task.config.generation_kwargs
    assert gk["max_gen_toks"] == 20 and gk["until"] == [] and gk["top_p"] == 0.9 and gk["do_sample"] is True
    meta = task.config.metadata
    assert meta["toxbench_summary"] == "toxbench.tasks.rtp.task_hooks:summarize"
    assert meta["toxbench_kind"] == "toxicity" and meta["lang"] == "en"
    task.build_all_requests(limit=3, rank=0, world_size=1)
    assert len(task.instances) == 3
    assert task.instances[0].args[0] == docs[task.instances[0].doc_id]["prompt"]  # the bare prompt as context
    assert task.instances[0].repeats == 25


def test_rtp_nontoxic_has_no_toxic_prompts():
    docs = list(load_task_dict(["rtp_nontoxic"])["rtp_nontoxic"].test_docs())
    assert len(docs) == 1200 and max(d["prompt_toxicity"] for d in docs) < 0.5


def test_lmeval_round_trip_keeps_all_samples_and_summarizes(fake_scorer):
    from lm_eval.evaluator import evaluate

    tasks = load_task_dict(["rtp_challenging"])
    res = evaluate(lm=EchoLM(), task_dict=tasks, limit=4, log_samples=True, verbosity="ERROR")
    samples = res["samples"]["rtp_challenging"]
    assert len(samples) == 4
    assert res["results"]["rtp_challenging"]["n_continuations,none"] == 25

    cfg = tasks["rtp_challenging"].config.to_dict()
    out = hooks.summarize(samples, "rtp_challenging", cfg, scorer=fake_scorer, seed=5)  # the scorer is an argument
    again = hooks.summarize(samples, "rtp_challenging", cfg, scorer=fake_scorer, seed=5)
    assert out["metrics"] == again["metrics"]  # seeded CIs
    assert fake_scorer.calls == 2  # one batched call per summary
    m = out["metrics"]
    for base in ("expected_max_toxicity", "toxicity_probability", "toxic_fraction"):
        assert base in m and m[base]["ci"] is not None
    assert "dist-1" in m and "dist-3" in m
    rows = out["samples"]
    assert len(rows) == 4 and all(len(r["continuations"]) == 25 for r in rows)
    assert len(set(rows[0]["continuations"])) == 25
    assert set(rows[0]["scores"]) == {"toxicity", "insult"}
    assert rows[0]["max_toxicity"] == max(rows[0]["toxicity"])
    # metrics agree with a direct computation over the same scores
    emt = np.mean([max(r["toxicity"]) for r in rows])
    assert m["expected_max_toxicity"]["value"] == pytest.approx(emt)
    p = out["protocol"]
    assert p["k"] == 25 and p["max_new_tokens"] == 20 and p["lang"] == "en" and p["scorer_language_ok"] is True
    assert p["scorer"]["name"] == "fake" and p["sampling"]["top_p"] == 0.9


def test_non_english_task_warns_and_records(fake_scorer):
    task = load_task_dict(["rtp_lx_de"])["rtp_lx_de"]
    docs = list(task.test_docs())[:3]
    samples = [{"doc_id": i, "doc": d, "filtered_resps": [[" a b", " c d"]]} for i, d in enumerate(docs)]
    with pytest.warns(UserWarning, match="does not support language 'de'"):
        out = hooks.summarize(samples, "rtp_lx_de", task.config.to_dict(), scorer=fake_scorer)
    assert out["protocol"]["scorer_language_ok"] is False
    assert out["protocol"]["lang"] == "de" and out["protocol"]["warnings"]
    assert "script_share" not in out["metrics"]  # Latin script: not measurable from characters


def test_non_latin_task_records_the_script_share(fake_scorer):
    task = load_task_dict(["rtp_lx_ru"])["rtp_lx_ru"]
    docs = list(task.test_docs())[:2]
    samples = [{"doc_id": i, "doc": d, "filtered_resps": [["да нет", "yes no"]]} for i, d in enumerate(docs)]
    with pytest.warns(UserWarning):
        out = hooks.summarize(samples, "rtp_lx_ru", task.config.to_dict(), scorer=fake_scorer)
    assert out["metrics"]["script_share"]["value"] == pytest.approx(0.5)


def test_rtp_lx_and_pairwise_docs():
    d = load_task_dict(["rtp_lx_zh-hans", "rtp_pairwise_en", "rtp_pairwise_fr"])
    lx = list(d["rtp_lx_zh-hans"].test_docs())
    assert len(lx) == 1036 and all(d["lang"] == "zh-hans" for d in lx)
    assert all(0.0 <= d["prompt_toxicity"] <= 1.0 for d in lx)  # 1-5 ratings mapped to 0-1
    en, fr = list(d["rtp_pairwise_en"].test_docs()), list(d["rtp_pairwise_fr"].test_docs())
    assert len(en) == len(fr) == 200
    assert [x["prompt_id"] for x in en] == [x["prompt_id"] for x in fr]  # parallel ids
    assert not any("&quot;" in x["prompt"] or "&#39;" in x["prompt"] for x in fr)
    assert all(x["prompt_toxicity"] is None for x in fr)


def test_pairwise_group_has_17_languages():
    d = load_task_dict(["rtp_pairwise_17"])
    names = {getattr(k, "group_name", k) for k in d}
    sub = d[next(k for k in d if "rtp_pairwise_17" in str(getattr(k, "group_name", k)))]
    assert "rtp_pairwise_17" in {str(n) for n in names}
    assert set(sub) == {f"rtp_pairwise_{lang}" for lang in P17}


def _load_user_rtp(monkeypatch, path):
    monkeypatch.setenv(hooks.RTP_DATA_ENV, str(path))
    return list(load_task_dict(["rtp"])["rtp"].test_docs())


def test_user_rtp_file(monkeypatch, tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text('{"prompt": {"text": "hello", "toxicity": 0.7}}\n\n{"prompt": {"text": "bye"}}\n')
    docs = _load_user_rtp(monkeypatch, f)
    assert [d["prompt"] for d in docs] == ["hello", "bye"]
    assert docs[0]["prompt_toxicity"] == pytest.approx(0.7) and docs[1]["prompt_toxicity"] is None


def test_malformed_jsonl_line_names_file_and_line(monkeypatch, tmp_path):
    f = tmp_path / "broken.jsonl"
    f.write_text('{"prompt": {"text": "a"}}\n{"prompt": {"text": "b"}}\n{"prompt": {"text": "c"\n')
    with pytest.raises(UsageError, match=r"broken\.jsonl:3"):
        _load_user_rtp(monkeypatch, f)


def test_record_without_prompt_text_names_file_and_line(monkeypatch, tmp_path):
    f = tmp_path / "nokey.jsonl"
    f.write_text('{"prompt": {"text": "a"}}\n\n{"text": "b"}\n')
    with pytest.raises(UsageError, match=r"nokey\.jsonl:3.*prompt\.text"):
        _load_user_rtp(monkeypatch, f)


def test_rtp_without_file_offline_is_one_line_error(monkeypatch):
    monkeypatch.delenv(hooks.RTP_DATA_ENV, raising=False)
    import datasets

    def offline(*a, **kw):  # what load_dataset raises without a network, minus the wait
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UsageError) as e:
        load_task_dict(["rtp"])
    msg = str(e.value)
    assert "\n" not in msg and "allenai/real-toxicity-prompts" in msg and "--data" in msg


def test_process_results_is_cheap_count():
    assert hooks.process_results({}, [[" a", " b", " c"]]) == {"n_continuations": 3}
    assert hooks.process_results({}, [" a"]) == {"n_continuations": 1}


def test_user_rtp_file_from_task_metadata(monkeypatch, tmp_path):
    """A run hands its --data file (and data dir) to the data loaders through the task metadata: no globals."""
    monkeypatch.delenv(hooks.RTP_DATA_ENV, raising=False)
    f = tmp_path / "ctx.jsonl"
    f.write_text('{"prompt": {"text": "one", "toxicity": 0.1}, "filename": "x.txt", "begin": 0, "end": 3}\n')
    docs = list(load_task_dict(["rtp"], metadata={hooks.RTP_DATA_KEY: str(f)})["rtp"].test_docs())
    assert [(d["prompt_id"], d["prompt"]) for d in docs] == [("x.txt:0-3", "one")]


def test_summarize_group_macro_average():
    m = lambda v: {"value": v, "ci": [v - 0.1, v + 0.1], "std": None, "higher_is_better": False}  # noqa: E731
    out = hooks.summarize_group({"rtp_lx_de": {"toxicity_probability": m(0.2)},
                                 "rtp_lx_fr": {"toxicity_probability": m(0.4)}})
    assert out["metrics"]["toxicity_probability"]["value"] == pytest.approx(0.3)
    assert out["metrics"]["toxicity_probability"]["higher_is_better"] is False
