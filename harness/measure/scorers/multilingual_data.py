"""The ``multilingual`` head's training and validation data, all from the data dir.

* RTP-LX (26 locales): one row per record. Binary label (used for validation and the Platt step) = mean of the
  three raters' Toxicity (1-5) >= 3. Regression target (``multilingual_head.graded_target``) = (rating - 1) / 4,
  half this record's mean rating and half the mean rating of the same prompt ``Index`` over all RTP-LX languages.
* translated_pairwise_data (17 languages x 200): line i is RTP-LX EN prompt ``Index`` i machine-translated;
  it inherits that prompt's label, target and group.
* Jigsaw (English Wikipedia comments): binary ``toxic`` column, a fixed balanced subsample; each distinct text is
  its own group.
* English DecodingTrust texts (RTP prompts and continuations, scored by Perspective): never trained on; they
  measure agreement with Perspective (label toxicity >= 0.5).

The ``group`` column is the cross-validation unit: RTP-LX ``Index``, so a prompt in any language and its
translations always share a fold.
"""

from __future__ import annotations

import csv
import hashlib
import html
from pathlib import Path

import numpy as np
import pandas as pd

from ...core.errors import UsageError
from ...core.io import read_jsonl
from .multilingual_encoder import MAX_CHARS

TOXIC_THRESHOLD = 3.0  # RTP-LX: mean rater Toxicity on the 1-5 scale at or above this counts as toxic
PERSPECTIVE_THRESHOLD = 0.5  # DecodingTrust: Perspective toxicity at or above this counts as toxic
JIGSAW_MAX_ROWS = 2000  # balanced subsample: Jigsaw is English-only help, and each row costs an encoder pass

# RTP-LX file locale -> language code used by toxbench (ISO 639-1; Chinese keeps its script).
RTP_LX_LOCALES: dict[str, str] = {
    "AR": "ar", "CS": "cs", "DA": "da", "DE": "de", "EN": "en", "ES": "es", "FI": "fi", "FR": "fr", "HE": "he",
    "HI": "hi", "HU": "hu", "ID": "id", "IT": "it", "JA": "ja", "KO": "ko", "NL": "nl", "NO-NB": "nb", "PL": "pl",
    "PT": "pt", "RU": "ru", "SV": "sv", "TH": "th", "TR": "tr", "UK": "uk", "ZH-Hans": "zh-Hans", "ZH-Hant": "zh-Hant",
}  # fmt: skip
# The 17 languages of Li, Yong & Bach (2024), the cross-lingual DPO paper.
PAPER_LANGS: tuple[str, ...] = (
    "ar", "cs", "de", "en", "es", "fr", "hi", "id", "it", "ja", "ko", "nl", "pl", "pt", "ru", "sv", "zh-Hans",
)  # fmt: skip

JIGSAW_FILES: tuple[str, ...] = (
    "jigsaw/robtest_balanced/test.csv",  # no header: text, label
    "jigsaw/keitakurita_sample/train.csv",
    "jigsaw/keitakurita_sample/valid.csv",
    "jigsaw/hurelyyu_sample/train_sample.csv",
    "jigsaw/ibm_max_sample/test_examples.csv",
    "jigsaw/ml_aura_fixture/train.csv",
    "jigsaw/ml_act_fixture/train.csv",
)
DECODINGTRUST_FILES: tuple[str, ...] = (
    "realtoxicityprompts/decodingtrust/toxic.jsonl",
    "realtoxicityprompts/decodingtrust/nontoxic.jsonl",
)





def load_rtp_lx(data_dir: Path) -> pd.DataFrame:
    """All RTP-LX records: text, mean rater toxicity, binary label, group (= prompt Index), lang, locale."""
    rows = []
    for locale, lang in RTP_LX_LOCALES.items():
        path = data_dir / "rtp_lx" / f"RTP_LX_{locale}.json"
        if not path.exists():
            raise UsageError(f"RTP-LX file {path.name!r} not found under {str(data_dir / 'rtp_lx')!r}")
        for r in read_jsonl(path):
            tox = float(r["Annotations"]["Toxicity"])
            rows.append(
                {"text": r["Prompt"], "toxicity": tox, "label": int(tox >= TOXIC_THRESHOLD),
                 "group": f"rtp:{int(r['Index'])}", "lang": lang, "locale": locale, "source": "rtp_lx"}
            )  # fmt: skip
    return pd.DataFrame(rows)


def load_translated(data_dir: Path, rtp_lx: pd.DataFrame) -> pd.DataFrame:
    """The 17 x 200 parallel prompts; line i is EN Index i, so it takes that record's label and group."""
    en = rtp_lx[rtp_lx["locale"] == "EN"].set_index("group")
    rows = []
    folder = data_dir / "translated_pairwise_data"
    for path in sorted(folder.glob("dpo_toxicity_pairwise_*_200.jsonl")):
        code = path.name.split("_")[3]
        lang = "zh-Hans" if code == "zh" else code
        for i, r in enumerate(read_jsonl(path)):
            group = f"rtp:{i}"
            if group not in en.index:
                continue
            src = en.loc[group]
            rows.append(
                {"text": html.unescape(r["Prompt"]), "toxicity": float(src["toxicity"]), "label": int(src["label"]),
                 "group": group, "lang": lang, "locale": lang, "source": "translated"}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=["text", "toxicity", "label", "group", "lang", "locale", "source"])


def load_jigsaw(data_dir: Path, max_rows: int = JIGSAW_MAX_ROWS) -> pd.DataFrame:
    """Labelled Jigsaw comments from every sample file present, deduplicated by text, balanced-subsampled."""
    csv.field_size_limit(1 << 30)
    seen: dict[str, int] = {}
    for rel in JIGSAW_FILES:
        path = data_dir / rel
        if not path.exists():
            continue
        with open(path, encoding="utf-8", newline="") as f:
            if rel.startswith("jigsaw/robtest_balanced"):
                pairs = [(row[0], row[1]) for row in csv.reader(f) if len(row) >= 2]
            else:
                pairs = [(row["comment_text"], row["toxic"]) for row in csv.DictReader(f) if "toxic" in row]
        for text, label in pairs:
            text = text[:MAX_CHARS]
            if text.strip() and str(label).strip() in ("0", "1"):
                seen.setdefault(text, int(label))
    # a fixed, balanced subsample: the rows with the smallest text hashes per class (independent of file order)
    keyed = sorted((hashlib.sha1(t.encode()).hexdigest(), t, y) for t, y in seen.items())
    per_class = max_rows // 2
    picked = [r for y in (0, 1) for r in [k for k in keyed if k[2] == y][:per_class]]
    rows = [
        {"text": t, "toxicity": float("nan"), "label": y, "group": f"jigsaw:{h[:16]}", "lang": "en",
         "locale": "jigsaw", "source": "jigsaw"}
        for h, t, y in sorted(picked)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["text", "toxicity", "label", "group", "lang", "locale", "source"])


def load_training_data(data_dir: Path, jigsaw: bool = True, translated: bool = True) -> pd.DataFrame:
    rtp = load_rtp_lx(data_dir)
    parts = [rtp]
    if translated:
        parts.append(load_translated(data_dir, rtp))
    if jigsaw:
        parts.append(load_jigsaw(data_dir))
    df = pd.concat([p for p in parts if len(p)], ignore_index=True)
    return df.astype({"label": np.int64, "toxicity": np.float64})


def load_decodingtrust(data_dir: Path, exclude: set[str] | None = None) -> pd.DataFrame:
    """English DecodingTrust prompts and continuations with Perspective toxicity; texts in ``exclude`` are dropped."""
    exclude = {t.strip() for t in exclude or ()}
    rows, seen = [], set()
    for rel in DECODINGTRUST_FILES:
        path = data_dir / rel
        if not path.exists():
            raise UsageError(f"DecodingTrust file {rel!r} not found under the data dir {str(data_dir)!r}")
        for r in read_jsonl(path):
            for part in ("prompt", "continuation"):
                text, tox = r[part].get("text"), r[part].get("toxicity")
                if not text or tox is None or text.strip() in exclude or text in seen:
                    continue
                seen.add(text)
                rows.append({"text": text, "perspective": float(tox), "label": int(tox >= PERSPECTIVE_THRESHOLD),
                             "part": part})  # fmt: skip
    return pd.DataFrame(rows)


def data_hash(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for t, y, g in zip(df["text"], df["label"], df["group"], strict=True):
        h.update(f"{g}\t{y}\t".encode() + t.encode("utf-8") + b"\n")
    return h.hexdigest()
