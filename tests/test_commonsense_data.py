"""The common-sense tasks load the real files of the data dir, with the sizes their SOURCE.md states."""

from __future__ import annotations

import logging

import pytest

from toxbench.harness.core.paths import data_dir

logging.getLogger("lm-eval").setLevel(logging.ERROR)

SIZES = {
    "piqa": 1838, "social_iqa": 1954, "arc_easy": 2376, "arc_challenge": 1172, "winogrande": 1267, "boolq": 3270,
    "hellaswag_1k": 1000, "lambada_openai": 5153, "openbookqa": 500, "copa": 100, "commonsense_qa_4way": 1221,
    "triviaqa_3k": 3000, "truthfulqa_mc1": 817, "truthfulqa_mc2": 817,
}

pytestmark = pytest.mark.skipif(not data_dir(must_exist=False).is_dir(), reason="no data dir")


@pytest.fixture(scope="module")
def tasks():
    from toxbench.tasks import load_task_dict

    return load_task_dict(["commonsense"])


def _leaves(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        out.update(_leaves(v) if isinstance(v, dict) else {getattr(k, "group_name", k): v})
    return out


def test_every_task_loads_with_its_size(tasks) -> None:
    from lm_eval.api.task import Task

    leaves = {t.config.task: t for t in _leaves(tasks).values() if isinstance(t, Task)}
    assert {n: len(t.eval_docs) for n, t in leaves.items()} == SIZES


def test_group_summary_averages_headline_metrics() -> None:
    from toxbench.tasks.commonsense.utils import group_summary

    out = group_summary({
        "piqa": {"acc,none": 0.6, "acc_norm,none": 0.62, "acc_stderr,none": 0.01},
        "boolq": {"acc": {"value": 0.5}},
        "triviaqa_3k": {"exact_match,remove_whitespace": 0.1},
    })
    assert out["metrics"]["acc_avg"]["value"] == pytest.approx((0.62 + 0.5 + 0.1) / 3)
    assert out["protocol"]["acc_avg_metrics"] == {"boolq": "acc", "piqa": "acc_norm", "triviaqa_3k": "exact_match"}
