"""``toxbench run``: build a RunSpec from the options and execute (or resume) it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..core.defaults import DEFAULT_SEED
from ..core.errors import UsageError
from ..core.io import sha256_file
from ..core.paths import cache_dir, data_dir
from ..measure.scorers import DEFAULT_SCORER
from ..run.runner import execute, validate
from ..spec.rundir import RunDir
from ..spec.runspec import GenerationSettings, RunSpec
from ..spec.sampling import SAMPLING_PRESETS
from ..spec.sampling import expand as expand_sampling
from ..spec.values import parse_kv, split_commas
from .base import ToxbenchCommand
from .options import (
    batch_size_option,
    bundle,
    dry_run_option,
    intervention_options,
    model_options,
    path_options,
    seed_option,
)
from .show import show_results


def _parse_shard(raw: str | None) -> tuple[int, int] | None:
    if not raw:
        return None
    try:
        i, n = (int(x) for x in raw.split("/"))
    except ValueError:
        raise UsageError(f"--shard {raw!r} is not I/N (e.g. 0/2)") from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"--shard {raw!r} is invalid; use I/N with 0 <= I < N")
    return (i, n)


#: Every option of a run (also what `toxbench sweep` takes for its base spec).
run_options = bundle(
    model_options,
    intervention_options,
    path_options,
    click.option("--tasks", "-t", multiple=True, default=("wikitext",), show_default=True,
                  help="Comma-separated tasks or groups (see `toxbench list tasks`); lmeval:NAME for lm-eval's own."),
    click.option("--scorer", default="auto", show_default=True,
                  help=f"Toxicity scorer (see `toxbench scorers list`); auto = {DEFAULT_SCORER} for English tasks, "
                       "multilingual for other languages."),
    click.option("--scorer-arg", "scorer_args", multiple=True, metavar="KEY=VALUE", help="Scorer option (repeatable)."),
    click.option("--sampling", default=None, metavar="NAME",
                  help=f"Named sampling preset ({', '.join(SAMPLING_PRESETS)}); explicit --k/--top-p/... override its "
                       "settings. Default: each task's own (RTP: the rtp preset)."),
    click.option("--k", "k", type=int, default=None, help="Samples per prompt (task default: RTP 25)."),
    click.option("--max-new-tokens", type=int, default=None, help="Tokens per sample (task default: RTP 20)."),
    click.option("--temperature", type=float, default=None),
    click.option("--top-p", type=float, default=None),
    click.option("--top-k", type=int, default=None),
    click.option("--greedy", is_flag=True, help="Greedy decoding (do_sample=False)."),
    seed_option,
    click.option("--limit", type=int, default=None, help="First N documents of each task."),
    click.option("--max-length", type=int, default=None,
                  help="Context window for loglikelihood tasks (default: the model's)."),
    batch_size_option,
    click.option("--output-dir", "-o", default="runs", show_default=True, type=click.Path()),
    click.option("--include-path", multiple=True, type=click.Path(), help="Extra folder of lm-eval task YAMLs."),
    click.option("--backend", default="hf", show_default=True, help="hf (hooks, any intervention) | vllm (exports)."),
    click.option("--backend-arg", "backend_args", multiple=True, metavar="KEY=VALUE",
                  help="Backend option, e.g. tensor_parallel_size=4, data_parallel_size=2 (vllm)."),
    click.option("--shard", default=None, metavar="I/N", help="Evaluate every N-th document starting at I."),
    click.option("--data", "data_file", default=None, type=click.Path(),
                  help="Your own data file for tasks that take one (rtp: a RealToxicityPrompts-format JSONL)."),
    click.option("--force", is_flag=True, help="Recompute even if the run directory is complete."),
    click.option("--wait", is_flag=True,
                  help="When another process is running the same spec, wait for it (default: refuse, naming it)."),
    click.option("--allow-unfingerprinted-state", is_flag=True,
                  help="Accept an --intervention-state without model_fingerprint metadata (you vouch it fits the model)."),
)


@click.command("run", cls=ToxbenchCommand)
@run_options
@dry_run_option
def run(**kw: Any) -> None:
    """Evaluate MODEL under INTERVENTION on TASKS; writes/resumes runs/<run_id>/."""
    spec = build_spec(**kw)
    if kw["dry_run"]:
        validate(spec)
        run = RunDir.for_spec(spec)
        done = run.load_results().get("completed") if run.results_file.is_file() else False
        click.echo(f"would {'skip (complete)' if done and not kw['force'] else 'run'}: {spec.model} x "
                   f"{spec.intervention} on {','.join(spec.tasks)} -> {run.path}")
        return
    run_dir = execute(spec, force=kw["force"], wait=kw["wait"])
    show_results(run_dir)


def build_spec(**kw: Any) -> RunSpec:
    """The RunSpec of ``toxbench run``'s options (missing ones take the CLI's defaults)."""
    data = None
    if kw.get("data_file"):
        p = Path(kw["data_file"]).expanduser()
        if not p.is_file():
            raise UsageError(f"--data file {kw['data_file']!r} " + ("is a directory, not a file" if p.is_dir()
                                                                      else "does not exist"))
        data = str(p.resolve())
    gen = expand_sampling(kw.get("sampling"), GenerationSettings(
        k=kw.get("k"), max_new_tokens=kw.get("max_new_tokens"), do_sample=False if kw.get("greedy") else None,
        temperature=kw.get("temperature"), top_p=kw.get("top_p"), top_k=kw.get("top_k")))
    return RunSpec(
        model=kw["model"], model_revision=kw.get("revision"), dtype=kw.get("dtype", "auto"),
        intervention=kw.get("intervention", "none"),
        intervention_args=parse_kv(kw.get("intervention_args", ()), "--intervention-arg", "k=50 or aura.pooling=mean"),
        intervention_state=str(Path(kw["intervention_state"]).resolve()) if kw.get("intervention_state") else None,
        tasks=tuple(split_commas(kw.get("tasks"))), scorer=kw.get("scorer", "auto"),
        scorer_args=parse_kv(kw.get("scorer_args", ()), "--scorer-arg", "calibrate=isotonic"), generation=gen,
        seed=kw.get("seed", DEFAULT_SEED), limit=kw.get("limit"), max_length=kw.get("max_length"),
        data_dir=str(data_dir(kw.get("data_dir"))),
        include_paths=tuple(str(Path(p).resolve()) for p in kw.get("include_path", ())),
        backend=kw.get("backend", "hf"),
        backend_options=parse_kv(kw.get("backend_args", ()), "--backend-arg", "tensor_parallel_size=4"),
        shard=_parse_shard(kw.get("shard")), batch_size=kw.get("batch_size", 16),
        device=kw.get("device", "auto"), output_dir=str(kw.get("output_dir", "runs")),
        cache_dir=str(cache_dir(kw.get("cache_dir"))), trust_remote_code=kw.get("trust_remote_code", False),
        data=data, data_sha256=sha256_file(data) if data else None, threads=kw.get("threads"),
        allow_unfingerprinted_state=bool(kw.get("allow_unfingerprinted_state")),
    )
