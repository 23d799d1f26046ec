"""Hooks for the zero-shot common-sense tasks: local files mapped onto the hub schema lm-eval's own tasks read.

Every task here keeps lm-eval's prompt, choices, target and metrics; only the data source differs. The data dir
holds other releases of the same sets (mostly MosaicML llm-foundry's eval files), so ``mapped_dataset`` rebuilds,
record by record, the hub record lm-eval's own YAML expects (``MAPPERS`` below) before any Arrow table is made
(TruthfulQA's answer->label dicts would otherwise become one struct column per answer). When the local file is
missing, the declared hub source is loaded as is. ``tests/test_commonsense_equality.py`` checks that our YAMLs
produce exactly the requests of lm-eval's built-in configs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lm_eval.tasks.hellaswag.utils import process_docs as hellaswag_process_docs  # noqa: F401
from lm_eval.tasks.super_glue.copa.utils import (  # noqa: F401
    doc_to_choice as copa_doc_to_choice,
    doc_to_target as copa_doc_to_target,
    doc_to_text as copa_doc_to_text,
)
from lm_eval.tasks.truthfulqa.utils import process_results_mc2  # noqa: F401
from lm_eval.tasks.winogrande.preprocess_winogrande import (  # noqa: F401
    doc_to_choice as winogrande_doc_to_choice,
    doc_to_target as winogrande_doc_to_target,
    doc_to_text as winogrande_doc_to_text,
)
from toxbench.harness.core.errors import UsageError
from toxbench.harness.measure.metrics import Metric
from toxbench.tasks.datafiles import from_hub, hub_dataset, local_dataset, read_records  # noqa: F401

LETTERS = "ABCDEFGHIJ"


# --------------------------------------------------------------------------------------------- helpers
def _strip_prefix(text: str, prefix: str, what: str) -> str:
    if not text.startswith(prefix):
        raise UsageError(f"{what}: expected a record starting with {prefix!r}; is this the llm-foundry file?")
    return text[len(prefix):]


def _strip_suffix(text: str, suffix: str, what: str) -> str:
    if not text.endswith(suffix):
        raise UsageError(f"{what}: expected a record ending with {suffix!r}; is this the llm-foundry file?")
    return text[: len(text) - len(suffix)]


# --------------------------------------------------------------------------------------------- data sets
def _dataset_dict(rows: list[dict], split: str):
    import datasets

    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows)})


def mapped_dataset(mapper: str | None = None, **kw: Any):
    """``custom_dataset`` entry: a local file's records mapped to the hub schema by ``MAPPERS[mapper]``."""
    if mapper is not None and mapper not in MAPPERS:
        raise UsageError(f"unknown mapper {mapper!r}; valid: {', '.join(sorted(MAPPERS))}")
    return local_dataset(**kw, transform=MAPPERS[mapper] if mapper else None)


def piqa_dataset(data_file: str | None = None, labels_file: str | None = None, split: str = "test",
                 hub: dict | None = None, toxbench_data_dir: str | None = None, **_: Any):
    """PIQA from the authors' release: ``valid.jsonl`` (goal, sol1, sol2) + ``valid-labels.lst`` (one label a line)."""
    try:
        if data_file is None or labels_file is None:
            raise FileNotFoundError("no local files declared")
        rows = read_records(data_file, "jsonl", toxbench_data_dir)
        labels = [r["text"] for r in read_records(labels_file, "text", toxbench_data_dir)]
    except FileNotFoundError:
        if hub:
            return from_hub(hub, split)
        return local_dataset(data_file, "jsonl", split, toxbench_data_dir=toxbench_data_dir)  # the one-line error
    if len(rows) != len(labels):
        raise UsageError(f"PIQA: {data_file} has {len(rows)} records but {labels_file} has {len(labels)} labels")
    docs = [{"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": int(lab)} for r, lab in zip(rows, labels)]
    return _dataset_dict(docs, split)


# --------------------------------------------------------------------------------------------- local -> hub
def _arc_doc(doc: dict) -> dict:
    """llm-foundry ``{query: "Question: ...", choices, gold}`` -> allenai/ai2_arc."""
    labels = list(LETTERS[: len(doc["choices"])])
    return {
        "question": _strip_prefix(doc["query"], "Question: ", "ARC"),
        "choices": {"text": list(doc["choices"]), "label": labels},
        "answerKey": labels[int(doc["gold"])],
    }



def _openbookqa_doc(doc: dict) -> dict:
    """llm-foundry ``{query: question_stem, choices, gold}`` -> allenai/openbookqa (main)."""
    labels = list(LETTERS[: len(doc["choices"])])
    return {
        "question_stem": doc["query"],
        "choices": {"text": list(doc["choices"]), "label": labels},
        "answerKey": labels[int(doc["gold"])],
    }



def _boolq_doc(doc: dict) -> dict:
    """llm-foundry ``{query: "Passage: P\\nQuestion: q?", gold}`` -> super_glue boolq (question without '?')."""
    body = _strip_prefix(doc["query"], "Passage: ", "BoolQ")
    cut = body.rfind("\nQuestion: ")  # one passage itself contains "\nQuestion: "
    if cut < 0:
        raise UsageError("BoolQ: a record has no '\\nQuestion: ' part")
    question = body[cut + len("\nQuestion: "):]
    return {
        "passage": body[:cut],
        "question": question[:-1] if question.endswith("?") else question,
        "label": int(doc["gold"]),
    }



def _lambada_doc(doc: dict) -> dict:
    """llm-foundry ``{context, continuation}`` -> EleutherAI/lambada_openai ``{text}``.

    llm-foundry split off the last word on whitespace (one continuation keeps its leading newlines); lm-eval
    splits ``text`` on single spaces, so rejoining with a space (or nothing, before whitespace) restores ``text``.
    """
    cont = doc["continuation"]
    return {"text": doc["context"] + (cont if cont[:1].isspace() else " " + cont)}



def _copa_doc(doc: dict) -> dict:
    """llm-foundry ``{query: "<premise minus '.'>, therefore|because", choices, gold}`` -> super_glue copa.

    lm-eval drops the premise's last character (its period) and lower-cases the first letter of each choice;
    llm-foundry did both already, so the premise gets its period back and the choices map as they are.
    """
    query = doc["query"]
    for connector, question in ((", therefore", "effect"), (", because", "cause")):
        if query.endswith(connector):
            premise = query[: -len(connector)] + "."
            break
    else:
        raise UsageError("COPA: a record ends with neither ', therefore' nor ', because'")
    return {
        "premise": premise,
        "choice1": doc["choices"][0],
        "choice2": doc["choices"][1],
        "question": question,
        "label": int(doc["gold"]),
    }



def _winogrande_doc(doc: dict) -> dict:
    """llm-foundry ``{context_options: [P+opt1, P+opt2], continuation, gold}`` -> allenai/winogrande.

    The blank's position is where the two contexts part (backed off to a word start, so options stay whole
    words); lm-eval's hooks then rebuild exactly ``context_options`` as choices and ``continuation`` as target.
    """
    a, b = doc["context_options"]
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    while i > 0 and not a[i - 1].isspace():
        i -= 1
    return {
        "sentence": a[:i] + "_ " + doc["continuation"].strip(),
        "option1": a[i:],
        "option2": b[i:],
        "answer": str(int(doc["gold"]) + 1),
    }



def _siqa_doc(doc: dict) -> dict:
    """common-bench ``{context, question, options[3], answer: text}`` -> lighteval/siqa (label "1".."3").

    One dev item lists the same option twice; its label is the first match (lm-eval's argmax picks the first
    of equal scores, so that item counts as correct here and may not on the hub copy).
    """
    opts = list(doc["options"])
    if doc["answer"] not in opts:
        raise UsageError("SIQA: a record's answer is not one of its options")
    return {
        "context": doc["context"],
        "question": doc["question"],
        "answerA": opts[0],
        "answerB": opts[1],
        "answerC": opts[2],
        "label": str(opts.index(doc["answer"]) + 1),
    }



def _truthfulqa_doc(doc: dict) -> dict:
    """TruthfulQA ``mc_task.json`` ``{question, mc1_targets: {answer: 0/1}, ...}`` -> truthful_qa multiple_choice."""

    def targets(d: dict) -> dict:
        return {"choices": list(d.keys()), "labels": [int(v) for v in d.values()]}

    return {
        "question": doc["question"],
        "mc1_targets": targets(doc["mc1_targets"]),
        "mc2_targets": targets(doc["mc2_targets"]),
    }



def _triviaqa_doc(doc: dict) -> dict:
    """llm-foundry ``{context: "Question: q\\nAnswer:", answer, aliases}`` -> trivia_qa rc.nocontext."""
    q = _strip_suffix(_strip_prefix(doc["context"], "Question: ", "TriviaQA"), "\nAnswer:", "TriviaQA")
    return {"question": q, "answer": {"value": doc["answer"], "aliases": list(doc["aliases"])}}



def _csqa_doc(doc: dict) -> dict:
    """llm-foundry ``{query: "Question: q\\nChoices:\\nA. ..\\nD. ..\\nAnswer:", choices: [A..D], gold}``.

    -> tau/commonsense_qa schema with the 4 choices the file kept (the original has 5).
    """
    lines = _strip_suffix(doc["query"], "\nAnswer:", "CommonsenseQA").split("\n")
    question = _strip_prefix(lines[0], "Question: ", "CommonsenseQA")
    if lines[1] != "Choices:":
        raise UsageError("CommonsenseQA: expected a 'Choices:' line")
    labels = list(doc["choices"])
    texts = [_strip_prefix(ln, f"{lab}. ", "CommonsenseQA") for ln, lab in zip(lines[2:], labels)]
    return {
        "question": question,
        "choices": {"text": texts, "label": labels},
        "answerKey": labels[int(doc["gold"])],
    }



MAPPERS: dict[str, Callable[[dict], dict]] = {
    "arc": _arc_doc,
    "openbookqa": _openbookqa_doc,
    "boolq": _boolq_doc,
    "lambada": _lambada_doc,
    "copa": _copa_doc,
    "winogrande": _winogrande_doc,
    "siqa": _siqa_doc,
    "truthfulqa": _truthfulqa_doc,
    "triviaqa": _triviaqa_doc,
    "csqa": _csqa_doc,
}


def csqa_doc_to_text(doc: dict) -> str:
    """lm-eval's commonsense_qa prompt for any number of choices (its Jinja template spells out exactly 5)."""
    opts = "".join(f"\n{lab}. {text}" for lab, text in zip(LETTERS, doc["choices"]["text"]))
    return f"Question: {doc['question'].strip()}{opts}\nAnswer:"


def csqa_doc_to_choice(doc: dict) -> list[str]:
    return list(LETTERS[: len(doc["choices"]["text"])])


# --------------------------------------------------------------------------------------------- group
#: The metric each task contributes to the ``commonsense`` average: acc_norm where lm-eval reports it.
HEADLINE_METRICS = ("acc_norm", "acc", "exact_match")


def headline_metric(metrics: dict[str, Any]) -> str | None:
    """The first of acc_norm / acc / exact_match a task reports (plain names or lm-eval's ``name,filter`` keys)."""
    names = {k.split(",")[0] for k in metrics}
    return next((m for m in HEADLINE_METRICS if m in names), None)


def _value(metrics: dict[str, Any], name: str) -> float:
    for key, v in metrics.items():
        if key.split(",")[0] == name:
            v = v.get("value") if isinstance(v, dict) else v
            return float(v)
    raise KeyError(name)


def group_summary(task_metrics: dict[str, dict[str, Any]]) -> dict:
    """The ``commonsense`` group's metrics from its tasks' metrics (``{task: {metric: value | {"value": ..}}}``).

    ``acc_avg`` is the unweighted mean over tasks of each task's headline metric (acc_norm where lm-eval reports
    it, else acc; exact_match for TriviaQA), the way the Open LLM Leaderboard-style averages are taken.
    """
    used: dict[str, str] = {}
    values: list[float] = []
    for task, metrics in sorted(task_metrics.items()):
        name = headline_metric(metrics)
        if name is None:
            continue
        v = _value(metrics, name)
        if math.isnan(v):
            continue
        used[task] = name
        values.append(v)
    if not values:
        raise UsageError("commonsense: none of its tasks reported acc, acc_norm or exact_match")
    mean = sum(values) / len(values)
    return {
        "metrics": {"acc_avg": Metric.of("acc_avg", mean).to_dict()},
        "protocol": {"acc_avg_metrics": used, "n_tasks": len(values)},
    }
