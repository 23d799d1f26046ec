"""Tasks are data: lm-eval YAMLs (+ small Python hooks) under this folder, resolved by name.

Our task names (``wikitext``, ``rtp_challenging``, ``piqa``...) come from this folder only; lm-eval's own hub
tasks stay reachable as ``lmeval:NAME`` (e.g. ``lmeval:piqa``), and users add folders with ``--include-path``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from ..harness.core.errors import did_you_mean
from ..harness.run import lm_eval_logs  # noqa: F401  (drops lm-eval's per-run noise)

TASKS_DIR = Path(__file__).resolve().parent
LMEVAL_PREFIX = "lmeval:"


@lru_cache(maxsize=8)
def task_manager(include_paths: tuple[str, ...] = (), include_defaults: bool = False,
                 metadata: tuple[tuple[str, Any], ...] = ()):
    """A TaskManager over our folder (+ user folders); lm-eval's defaults only when asked for. ``metadata`` goes
    into every task's config (lm-eval passes it to ``custom_dataset`` hooks): how a run hands its data dir, its
    ``--data`` file and its model to the task data loaders, with no global state."""
    from lm_eval.tasks import TaskManager

    paths = [str(TASKS_DIR), *include_paths]
    return TaskManager(include_path=paths, include_defaults=include_defaults, metadata=dict(metadata) or None)


def task_names(include_paths: tuple[str, ...] = ()) -> list[str]:
    """Every task and group name we can resolve without the hub."""
    tm = task_manager(tuple(include_paths))
    return sorted(tm.all_subtasks + tm.all_groups) if hasattr(tm, "all_subtasks") else sorted(tm.all_tasks)


def resolve_task_names(names: list[str], include_paths: tuple[str, ...] = ()) -> list[str]:
    """Check every name (did-you-mean error for unknown ones) before anything heavy runs."""
    ours = set(task_names(include_paths))
    out: list[str] = []
    for n in names:
        if n.startswith(LMEVAL_PREFIX):
            full = task_manager(tuple(include_paths), True)
            bare = n[len(LMEVAL_PREFIX):]
            if bare not in set(full.all_tasks):
                raise did_you_mean(bare, full.all_tasks, "lm-eval task")
            out.append(n)
        elif n in ours:
            out.append(n)
        else:
            raise did_you_mean(n, ours, "task")
    return out


def load_task_dict(names: list[str], include_paths: tuple[str, ...] = (), metadata: dict[str, Any] | None = None
                   ) -> dict:
    """lm-eval task dict for ``names`` (ours, user folders, or ``lmeval:`` hub tasks), ``metadata`` in every task's
    config (``task_manager``)."""
    from lm_eval.tasks import get_task_dict

    meta = tuple(sorted((metadata or {}).items()))
    ours = [n for n in names if not n.startswith(LMEVAL_PREFIX)]
    hub = [n[len(LMEVAL_PREFIX):] for n in names if n.startswith(LMEVAL_PREFIX)]
    out: dict = {}
    if ours:
        out.update(get_task_dict(ours, task_manager(tuple(include_paths), False, meta)))
    if hub:
        out.update(get_task_dict(hub, task_manager(tuple(include_paths), True, meta)))
    return out
