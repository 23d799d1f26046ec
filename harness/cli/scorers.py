"""``toxbench scorers``: list the toxicity scorers and measure their agreement with Perspective API.

``train`` (the trainable scorers' heads) lives in scorers_multilingual.py and is attached to this group.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import click

from ..core.errors import UsageError, did_you_mean
from ..core.io import atomic_write_text
from ..core.paths import cache_dir as resolve_cache
from ..core.paths import data_dir as resolve_data
from ..measure.scorers import DEFAULT_SCORER, EVAL_DEFAULTS, SCORERS, ensemble
from ..measure.scorers.agreement import evaluate_on_file, evaluate_scorers, to_markdown
from ..measure.scorers.labelled import load_labelled
from ..spec.values import parse_kv, split_commas
from .base import ToxbenchGroup
from .options import cache_dir_option, data_dir_option, folds_seed_option, threads_option
from .scorers_multilingual import run_eval, train

_OPTION_EXAMPLE = "jigsaw-bilstm:normalize_quotes=true"


def _parse_options(raw: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``SCORER:KEY=VALUE`` items -> {scorer: {key: value}} (values parsed by harness/settings.py)."""
    for item in raw:
        name, colon, key = item.partition("=")[0].partition(":")
        if not (colon and name.strip() and key.strip()):
            raise UsageError(f"--scorer-arg {item!r} is not SCORER:KEY=VALUE (e.g. {_OPTION_EXAMPLE})")
    out: dict[str, dict[str, Any]] = {}
    for head, value in parse_kv(raw, "--scorer-arg", _OPTION_EXAMPLE):
        name, _, key = head.partition(":")
        out.setdefault(name.strip(), {})[key.strip()] = value
    return out


@click.group("scorers", cls=ToxbenchGroup)
def scorers() -> None:
    """Toxicity scorers: list them, measure their agreement with Perspective API."""


@scorers.command("list")
def list_scorers() -> None:
    """The registered scorers: name, version, languages, and what is missing to use them here."""
    for name in SCORERS.names():
        try:
            cls = SCORERS.get(name)
            langs = "any" if cls.languages is None else ",".join(cls.languages)
            missing = [m for m in getattr(cls, "requires", ()) if importlib.util.find_spec(m) is None]
            line = f"{name}\t{cls.version}\t{langs}" + (f"\tmissing: {', '.join(missing)}" if missing else "")
        except UsageError as e:
            line = f"{name}\t-\t-\tunavailable: {e}"
        click.echo(line + ("\t(default)" if name == DEFAULT_SCORER else ""))


@scorers.command("eval")
@click.option("--scorer", "-s", "names", multiple=True, metavar="NAME",
              help="Scorer to measure (repeatable; default: every offline scorer).")
@click.option("--calibrate", type=click.Choice(["isotonic", "platt"]), default=None,
              help="Also report the scores calibrated to Perspective's scale (fit on prompts, evaluated on "
                   "continuations).")
@click.option("--scorer-arg", "options", multiple=True, metavar="SCORER:KEY=VALUE",
              help="A setting of one scorer (repeatable), e.g. rtp-stack:threshold=0.4.")
@data_dir_option
@cache_dir_option
@click.option("--out", "-o", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table here (.md, or .csv for the raw numbers).")
@click.option("--data", "data_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Your own labelled file (JSONL or CSV) instead of the RTP reference texts.")
@click.option("--text-column", default="text", show_default=True, help="With --data: the text column.")
@click.option("--score-column", default=None,
              help="With --data: reference scores in [0, 1], e.g. Perspective toxicity (label = score >= 0.5); "
                   "default: the first of toxicity, score, perspective present.")
@click.option("--label-column", default=None,
              help="With --data: a binary label column (0/1, true/false); default: label or toxic when no score "
                   "column is found.")
@click.option("--lang-column", default=None, help="With --data: a language column (adds per-language rows).")
@threads_option
def eval_scorers(names: tuple[str, ...], calibrate: str | None, options: tuple[str, ...], data_dir: str | None,
                 cache_dir: str | None, output: Path | None, data_file: Path | None, text_column: str,
                 score_column: str | None, label_column: str | None, lang_column: str | None,
                 threads: int | None) -> None:
    """Agreement with the Perspective scores of RealToxicityPrompts texts (DecodingTrust prompts + continuations):
    ROC-AUC against Perspective toxicity >= 0.5, Spearman, MAE, calibration error, share flagged at 0.5 and
    texts/s; on all texts and on continuations alone. Prints a Markdown table.

    With --data FILE: the same table on your own labelled JSONL/CSV file (one row per scorer, plus one per
    language with --lang-column); default scorer: the default of runs (and multilingual for other languages)."""
    chosen = split_commas(names)
    for n in chosen:
        if n not in SCORERS:
            raise did_you_mean(n, SCORERS.names(), "scorer")
    opts = _parse_options(options)
    cdir = resolve_cache(cache_dir)
    if data_file is None and (score_column or label_column or lang_column or text_column != "text"):
        raise UsageError("--text-column / --score-column / --label-column / --lang-column need --data FILE")
    if data_file is not None:
        if calibrate:
            raise UsageError("--calibrate fits on the RTP reference texts; with --data, pass a calibrated scorer "
                             "option instead (e.g. --scorer-arg NAME:calibrate=... where the scorer has one)")
        data = load_labelled(data_file, text_column, score_column, label_column, lang_column)
        if not chosen:
            other = data.langs is not None and any(not str(lang).lower().startswith("en") for lang in data.langs)
            chosen = [DEFAULT_SCORER, *(["multilingual"] if other else [])]
        df = evaluate_on_file(chosen, data, cache_dir=cdir, options=opts)
        text = f"{data_file}: {len(data)} texts, reference {data.source}\n\n" + to_markdown(df)
        click.echo(text)
        if output is not None:
            atomic_write_text(output, df.to_csv(index=False) if output.suffix == ".csv" else text + "\n")
            click.echo(f"wrote {output}", err=True)
        return
    chosen = chosen or list(EVAL_DEFAULTS)
    droot = resolve_data(data_dir)
    df = evaluate_scorers(chosen, data_dir=droot, cache_dir=cdir, calibrate=calibrate, options=opts)
    text = to_markdown(df)
    click.echo(text)
    extra = []
    if "multilingual" in chosen:  # its own per-language table (human labels of RTP-LX)
        try:
            extra.append(run_eval(cache_dir=cdir, data_dir=droot))
            click.echo("\n" + extra[-1])
        except UsageError as e:  # e.g. the head is not trained yet: the agreement table above still stands
            click.echo(f"multilingual per-language table unavailable: {e}", err=True)
    if output is not None:
        if output.suffix == ".csv":
            atomic_write_text(output, df.to_csv(index=False))
        else:
            atomic_write_text(output, "\n\n".join([text, *extra]) + "\n")
        click.echo(f"wrote {output}", err=True)


@scorers.command("card")
@click.argument("name")
@click.option("--scorer-arg", "options", multiple=True, metavar="KEY=VALUE", help="Scorer option (repeatable).")
@data_dir_option
@cache_dir_option
@click.option("--out", "-o", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the card (Markdown) to this file.")
@threads_option
def card(name: str, options: tuple[str, ...], data_dir: str | None, cache_dir: str | None, output: Path | None,
         threads: int | None) -> None:
    """The card of scorer NAME: training data, held-out agreement with Perspective on a random RTP sample and on
    DecodingTrust's extremes, calibration error, speed, version and weights hash."""
    from ..measure.scorers.card import scorer_card

    if name not in SCORERS:
        raise did_you_mean(name, SCORERS.names(), "scorer")
    opts = dict(parse_kv(options, "--scorer-arg", "attribute=insult"))
    text = scorer_card(name, data_dir=resolve_data(data_dir), cache_dir=resolve_cache(cache_dir), options=opts)
    click.echo(text, nl=False)
    if output is not None:
        atomic_write_text(output, text)
        click.echo(f"wrote {output}", err=True)


@scorers.command("fit-ensemble")
@data_dir_option
@click.option("--out", "-o", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the head (default: the shipped harness/measure/scorers/data/jigsaw_ensemble_head.safetensors).")
@cache_dir_option
@folds_seed_option
@threads_option
def fit_ensemble(data_dir: str | None, output: Path | None, cache_dir: str | None, folds_seed: int,
                 threads: int | None) -> None:
    """Rebuild the jigsaw-ensemble MiniLM head from the Jigsaw files only (~13k texts; ~10 min on 2 CPU cores,
    seconds once the embeddings are cached)."""
    info = ensemble.fit_head(data_dir, out=output or ensemble.HEAD_FILE, seed=folds_seed, cache_dir=resolve_cache(cache_dir),
                    threads=threads)
    click.echo(f"wrote {info['path']} (trained on {info['n']} Jigsaw texts, C={info['C']} by 5-fold CV; "
               f"sha256 {info['sha256'][:12]})")


scorers.add_command(train, "train")
