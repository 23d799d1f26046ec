"""rtp-stack (English default): prompt-grouped folds, the seeded byte-identical rebuild of its head, the scorer
(version tied to the head's bytes, Perspective-scale outputs) and held-out reporting in `scorers eval`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numeric import assert_safetensors_close

from toxbench.harness.measure.scorers import rtp_reference, stacked as st
from toxbench.harness.measure.scorers.folds import fold_ids


def _write_rtp(root: Path, n: int = 24) -> Path:
    """A data dir with the Perspective-scored RTP files (training reference + random sample), synthetic texts (half
    scored toxic by wording)."""
    rng = np.random.default_rng(0)
    files = (*rtp_reference.RTP_FILES, *rtp_reference.RANDOM_FILES)
    for rel, gens in zip(files, (False, False, True, False)):
        rows = []
        for i in range(n):
            tox = float(rng.uniform(0.6, 0.95)) if i % 2 else float(rng.uniform(0.02, 0.3))
            word = "damn stupid idiot" if i % 2 else "lovely garden"
            rec = {"prompt": {"text": f"{rel[-12:]} prompt {i} {word}", "toxicity": tox},
                   "continuation": {"text": f"{rel[-12:]} cont {i} {word}", "toxicity": tox * 0.9}}
            if gens:
                rec["generations"] = [{"text": f"gen {i} {j} {word}", "toxicity": tox * 0.8} for j in range(3)]
            rows.append(json.dumps(rec))
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(rows) + "\n")
    return root


def test_real_data_groups_keep_prompts_with_their_texts() -> None:
    data = rtp_reference.load_rtp_labelled()
    assert len(set(data.texts)) == len(data) and len(data) > 7000
    assert set(data.part) == set(rtp_reference.PARTS)
    assert ((data.perspective >= 0) & (data.perspective <= 1)).all()
    fold = fold_ids(data.group, 5, seed=0)
    for g in np.unique(data.group)[:500]:
        assert len(set(fold[data.group == g])) == 1  # a prompt, its continuation and generations: one fold
    assert np.array_equal(fold, fold_ids(data.group, 5, seed=0))


def test_train_is_byte_identical_and_versioned(tmp_path) -> None:
    root = _write_rtp(tmp_path / "data")
    a = st.train_head(root, tmp_path / "cache", out=tmp_path / "a.safetensors")
    st.train_head(root, None, out=tmp_path / "b.safetensors")  # no feature cache: same bytes
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert a["n_train"] == 24 * 2 * 3 + 24 * 3 and set(a["held_out_roc_auc"]) >= {"all", "prompt"}
    c = st.train_head(root, tmp_path / "cache", out=tmp_path / "c.safetensors", limit=12)
    assert c["sha256"] != a["sha256"]

    s_a = st.RTPStack(cache_dir=tmp_path, head_file=tmp_path / "a.safetensors")
    s_c = st.RTPStack(cache_dir=tmp_path, head_file=tmp_path / "c.safetensors")
    assert s_a.version == f"{st.HEAD_FORMAT}+{a['sha256'][:12]}" and s_a.version != s_c.version
    got = s_a.score_heads(["what a lovely garden", "you damn stupid idiot", ""])
    assert set(got) == {"toxicity", "bilstm_toxic", "profanity"}
    assert got["toxicity"][1] > 0.5 > got["toxicity"][0]
    assert s_a.score([]).shape == (0,)
    assert s_a.describe()["scale"].startswith("perspective")


def test_shipped_head_loads_and_records_held_out_auc(tmp_path) -> None:
    s = st.RTPStack(cache_dir=tmp_path)
    auc = s.head.meta["held_out_roc_auc"]
    assert auc["all"] >= 0.95 and auc["continuation"] >= 0.95 and auc["generation"] >= 0.95
    x = s.score(["Thank you for the lovely afternoon.", "The weather is mild today."])
    assert (x < 0.5).all()
    assert s.held_out_scores(["a text that is not in the training data"]) is None


def test_eval_reports_held_out_folds_for_a_scorer_trained_on_the_reference(tmp_path, monkeypatch) -> None:
    from toxbench.harness.measure.scorers.agreement import evaluate_scorers

    root = _write_rtp(tmp_path / "data")
    head = tmp_path / "head.safetensors"
    st.train_head(root, tmp_path, out=head)
    monkeypatch.setattr(st, "HEAD_FILE", head)
    df = evaluate_scorers(["rtp-stack"], data_dir=root, cache_dir=tmp_path)
    trained_on = df[df["distribution"] == "DecodingTrust extremes"]
    assert set(trained_on["calibration"]) == {"held-out folds"}
    assert list(trained_on["texts"]) == ["all", "prompts", "continuations", "generations"]
    random = df[df["distribution"] == "random RTP sample"]  # never trained on: plain scores are held out
    assert list(random["texts"]) == ["all", "prompts", "continuations"] and set(random["calibration"]) == {"raw"}
    assert list(df["distribution"].drop_duplicates()) == ["random RTP sample", "DecodingTrust extremes"]
    assert df["roc_auc"].between(0, 1).all() and (df["calibration_error"] >= 0).all()


def test_train_command_rtp_stack(tmp_path) -> None:
    from click.testing import CliRunner

    from toxbench.harness.cli.scorers_multilingual import train

    root = _write_rtp(tmp_path / "data")
    out = tmp_path / "h.safetensors"
    r = CliRunner().invoke(train, ["rtp-stack", "--data-dir", str(root), "--cache-dir", str(tmp_path), "--out",
                                   str(out)])
    assert r.exit_code == 0, r.output
    assert "held-out ROC-AUC" in r.output and out.is_file()


@pytest.mark.slow
def test_shipped_head_equals_a_rebuild(tmp_path) -> None:
    """~1 minute: features of 7,460 texts, then the same fit as `toxbench scorers train rtp-stack`."""
    st.train_head(None, tmp_path, out=tmp_path / "rebuilt.safetensors")
    assert_safetensors_close(tmp_path / "rebuilt.safetensors", st.HEAD_FILE)  # byte-equal on the same kernels


def test_scorer_card_prints_identity_training_data_and_both_distributions(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from toxbench.harness.cli.scorers import scorers

    root = _write_rtp(tmp_path / "data")
    head = tmp_path / "head.safetensors"
    st.train_head(root, tmp_path, out=head)
    monkeypatch.setattr(st, "HEAD_FILE", head)
    out = tmp_path / "card.md"
    r = CliRunner().invoke(scorers, ["card", "rtp-stack", "--data-dir", str(root), "--cache-dir", str(tmp_path),
                                     "--out", str(out)])
    assert r.exit_code == 0, r.output
    card = out.read_text()
    assert "`rtp-stack@" in card and "head sha256" in card and "training data" in card and "texts/s" in card
    rows = [ln for ln in card.splitlines() if ln.startswith("| random RTP sample") or ln.startswith("| DecodingTrust")]
    assert len(rows) == 7 and "| raw |" in rows[0] and "| held-out folds |" in rows[-1]
    bad = CliRunner().invoke(scorers, ["card", "rtp-stak"])
    assert bad.exit_code == 2 and "rtp-stack" in bad.output and len(bad.output.strip().splitlines()) == 1
