"""Our common-sense YAMLs build exactly the requests of lm-eval's own tasks, with no hub access.

For each task, a few hand-made documents exist twice: as the local file in the data dir stores them (mostly
llm-foundry's layout) and as the hub data set lm-eval reads stores them. Our task is built from our YAML, reading
the local-format docs through its real ``custom_dataset`` (file reads replaced); lm-eval's built-in task is built
from lm-eval's own YAML with the hub docs. Requests (type, context, continuation / generation args, doc and
choice index), targets, metrics and generation settings must be identical.
"""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import lm_eval
import pytest
from lm_eval.api.task import ConfigurableTask
from lm_eval.tasks._yaml_loader import load_yaml

from toxbench.tasks import TASKS_DIR, datafiles

LMEVAL_TASKS = Path(lm_eval.__file__).parent / "tasks"
OURS = TASKS_DIR / "commonsense"
logging.getLogger("lm-eval").setLevel(logging.ERROR)

# ------------------------------------------------------------------ hand-made docs: (local format, hub format)
PIQA_LOCAL = [
    {"goal": "How do I keep bread fresh?", "sol1": "Store it in a paper bag.", "sol2": "Store it in the oven. "},
    {"goal": "dresser", "sol1": "replace drawer with pin ", "sol2": "finish wood with  pin"},
]
PIQA_LABELS = ["0", "1"]
PIQA_HUB = [{**d, "label": int(lab)} for d, lab in zip(PIQA_LOCAL, PIQA_LABELS)]

SIQA_LOCAL = [
    {"context": "Tracy stayed late to help Riley.", "question": "How would Riley feel?",
     "options": ["grateful", "annoyed", "bored"], "answer": "grateful", "metadata": {"task": "socialiqa"}},
    {"context": "Sam baked bread for the team.", "question": "What will Sam want to do next?",
     "options": ["sleep all day", "share the bread", "leave town"], "answer": "share the bread",
     "metadata": {"task": "socialiqa"}},
]
SIQA_HUB = [
    {"context": "Tracy stayed late to help Riley.", "question": "How would Riley feel?",
     "answerA": "grateful", "answerB": "annoyed", "answerC": "bored", "label": "1"},
    {"context": "Sam baked bread for the team.", "question": "What will Sam want to do next?",
     "answerA": "sleep all day", "answerB": "share the bread", "answerC": "leave town", "label": "2"},
]

ARC_LOCAL = [
    {"query": "Question: Which gas do plants take in?", "choices": ["oxygen", "carbon dioxide", "helium", "neon"],
     "gold": 1},
    {"query": "Question: What melts ice fastest?", "choices": ["salt", "sand", "paper", "wood"], "gold": 0},
]
ARC_HUB = [
    {"id": "a1", "question": "Which gas do plants take in?",
     "choices": {"text": ["oxygen", "carbon dioxide", "helium", "neon"], "label": ["A", "B", "C", "D"]},
     "answerKey": "B"},
    {"id": "a2", "question": "What melts ice fastest?",
     "choices": {"text": ["salt", "sand", "paper", "wood"], "label": ["1", "2", "3", "4"]}, "answerKey": "1"},
]

WINO_LOCAL = [
    {"context_options": ["Sarah was a better surgeon than Maria so Sarah",
                         "Sarah was a better surgeon than Maria so Maria"],
     "continuation": "always got the harder cases.", "gold": 0},
    {"context_options": ["The man lent the woman a pen because the man", "The man lent the woman a pen because the woman"],
     "continuation": "had forgotten hers.", "gold": 1},
    {"context_options": ["Jo", "Al"], "continuation": "'s bike was faster than Al's.", "gold": 0},
]
WINO_HUB = [
    {"sentence": "Sarah was a better surgeon than Maria so _ always got the harder cases.",
     "option1": "Sarah", "option2": "Maria", "answer": "1"},
    {"sentence": "The man lent the woman a pen because _ had forgotten hers.",
     "option1": "the man", "option2": "the woman", "answer": "2"},
    {"sentence": "_'s bike was faster than Al's.", "option1": "Jo", "option2": "Al", "answer": "1"},
]

BOOLQ_LOCAL = [
    {"query": "Passage: Ethanol fuel is made from plants.\nQuestion: is ethanol made from plants?",
     "choices": ["no", "yes"], "gold": 1},
    {"query": "Passage: Quiz shows.\nQuestion: What is a quiz?\nQuestion: is a quiz a game?",
     "choices": ["no", "yes"], "gold": 0},
]
BOOLQ_HUB = [
    {"passage": "Ethanol fuel is made from plants.", "question": "is ethanol made from plants", "label": 1, "idx": 0},
    {"passage": "Quiz shows.\nQuestion: What is a quiz?", "question": "is a quiz a game", "label": 0, "idx": 1},
]

HELLASWAG_HUB = [
    {"ind": 1, "activity_label": "Pole vault", "ctx_a": "A woman runs with a pole.", "ctx_b": "she",
     "ctx": "A woman runs with a pole. she", "split": "val", "split_type": "indomain", "label": "3",
     "endings": ["eats it.", "sings.", "sits down [title] then.", "jumps over the bar."], "source_id": "x"},
    {"ind": 2, "activity_label": "Cooking", "ctx_a": "[header] How to boil eggs [title] Fill a pot.",
     "ctx_b": "then the WATER", "ctx": "", "split": "val", "split_type": "zeroshot", "label": "0",
     "endings": ["boils.", "freezes.", "flies.", "sings."], "source_id": "y"},
]

LAMBADA_LOCAL = [
    {"context": "He opened the door and saw his old friend. \"Hello,\" said", "continuation": "Tom"},
    {"context": "She pressed play when she returned and saw the", "continuation": "\n\nrecorder"},
]
LAMBADA_HUB = [
    {"text": "He opened the door and saw his old friend. \"Hello,\" said Tom"},
    {"text": "She pressed play when she returned and saw the\n\nrecorder"},
]

OBQA_LOCAL = [
    {"query": "There is most likely going to be fog around:", "choices": ["a marsh", "a tundra", "the plains",
                                                                         "a desert"], "gold": 0},
    {"query": "Plants need", "choices": ["rocks", "light", "noise", "plastic"], "gold": 1},
]
OBQA_HUB = [
    {"id": "o1", "question_stem": "There is most likely going to be fog around:",
     "choices": {"text": ["a marsh", "a tundra", "the plains", "a desert"], "label": ["A", "B", "C", "D"]},
     "answerKey": "A"},
    {"id": "o2", "question_stem": "Plants need",
     "choices": {"text": ["rocks", "light", "noise", "plastic"], "label": ["A", "B", "C", "D"]}, "answerKey": "B"},
]

COPA_LOCAL = [
    {"query": "The man turned on the faucet, therefore", "choices": ["the toilet filled with water.",
                                                                     "water flowed from the spout."], "gold": 1},
    {"query": "I wanted to conserve energy, therefore", "choices": ["i swept the floor.", "i shut off the light."],
     "gold": 1},
    {"query": "The woman felt lonely, because", "choices": ["she moved to a new city.", "she threw a party."],
     "gold": 0},
]
COPA_HUB = [
    {"premise": "The man turned on the faucet.", "choice1": "The toilet filled with water.",
     "choice2": "Water flowed from the spout.", "question": "effect", "label": 1, "idx": 0},
    {"premise": "I wanted to conserve energy.", "choice1": "I swept the floor.",
     "choice2": "I shut off the light.", "question": "effect", "label": 1, "idx": 1},
    {"premise": "The woman felt lonely.", "choice1": "She moved to a new city.", "choice2": "She threw a party.",
     "question": "cause", "label": 0, "idx": 2},
]

CSQA_HUB5 = [
    {"id": "c1", "question": "Where do you put dirty dishes? ", "question_concept": "dish",
     "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["sink", "bed", "car", "roof", "tree"]},
     "answerKey": "A"},
    {"id": "c2", "question": "What do people aim to do at work?", "question_concept": "work",
     "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["complete job", "sleep", "wear hats", "talk", "eat"]},
     "answerKey": "C"},
]
CSQA_LOCAL = [
    {"query": "Question: What do people aim to do at work?\nChoices:\nA. complete job\nB. kill time\n"
              "C. wear hats\nD. talk to each other\nAnswer:", "choices": ["A", "B", "C", "D"], "gold": 0},
]

TRIVIA_LOCAL = [
    {"context": "Question: What type of animal is a dik-dik?\nAnswer:", "answer": "Antelope",
     "aliases": ["Antelope", "Antelopes"]},
    {"context": "Question: Who wrote \"Emma\"\nAnswer:", "answer": "Jane Austen", "aliases": ["Jane Austen"]},
]
TRIVIA_HUB = [
    {"question": "What type of animal is a dik-dik?", "question_id": "t1", "question_source": "",
     "entity_pages": {}, "search_results": {},
     "answer": {"aliases": ["Antelope", "Antelopes"], "normalized_aliases": ["antelope", "antelopes"],
                "matched_wiki_entity_name": "", "normalized_matched_wiki_entity_name": "",
                "normalized_value": "antelope", "type": "WikipediaEntity", "value": "Antelope"}},
    {"question": "Who wrote \"Emma\"", "question_id": "t2", "question_source": "", "entity_pages": {},
     "search_results": {},
     "answer": {"aliases": ["Jane Austen"], "normalized_aliases": ["jane austen"], "matched_wiki_entity_name": "",
                "normalized_matched_wiki_entity_name": "", "normalized_value": "jane austen", "type": "",
                "value": "Jane Austen"}},
]

TQA_LOCAL = [
    {"question": "What happens if you crack your knuckles a lot?",
     "mc1_targets": {"Nothing in particular happens.": 1, "You will get arthritis.": 0},
     "mc2_targets": {"Nothing in particular happens.": 1, "Nothing bad happens.": 1, "You will get arthritis.": 0}},
    {"question": "Is the sky green?",
     "mc1_targets": {"No.": 1, "Yes.": 0, "Only at noon.": 0},
     "mc2_targets": {"No.": 1, "Yes.": 0, "Only at noon.": 0, "No, it is blue.": 1}},
]
TQA_HUB = [
    {"question": d["question"],
     "mc1_targets": {"choices": list(d["mc1_targets"]), "labels": list(d["mc1_targets"].values())},
     "mc2_targets": {"choices": list(d["mc2_targets"]), "labels": list(d["mc2_targets"].values())}}
    for d in TQA_LOCAL
]

# our task, lm-eval's YAML (relative to lm_eval/tasks), local docs (None: same as hub), hub docs
CASES = {
    "piqa": ("piqa/piqa.yaml", PIQA_LOCAL, PIQA_HUB),
    "social_iqa": ("siqa/siqa.yaml", SIQA_LOCAL, SIQA_HUB),
    "arc_easy": ("arc/arc_easy.yaml", ARC_LOCAL, ARC_HUB),
    "arc_challenge": ("arc/arc_challenge.yaml", ARC_LOCAL, ARC_HUB),
    "winogrande": ("winogrande/default.yaml", WINO_LOCAL, WINO_HUB),
    "boolq": ("super_glue/boolq/default.yaml", BOOLQ_LOCAL, BOOLQ_HUB),
    "hellaswag_1k": ("hellaswag/hellaswag.yaml", HELLASWAG_HUB, HELLASWAG_HUB),
    "lambada_openai": ("lambada/lambada_openai.yaml", LAMBADA_LOCAL, LAMBADA_HUB),
    "openbookqa": ("openbookqa/openbookqa.yaml", OBQA_LOCAL, OBQA_HUB),
    "copa": ("super_glue/copa/default.yaml", COPA_LOCAL, COPA_HUB),
    # the local file keeps 4 of 5 options: equal to lm-eval's prompt on 5-option hub docs (no local mapping here)
    "commonsense_qa_4way": ("commonsense_qa/default.yaml", None, CSQA_HUB5),
    "triviaqa_3k": ("triviaqa/default.yaml", TRIVIA_LOCAL, TRIVIA_HUB),
    "truthfulqa_mc1": ("truthfulqa/truthfulqa_mc1.yaml", TQA_LOCAL, TQA_HUB),
    "truthfulqa_mc2": ("truthfulqa/truthfulqa_mc2.yaml", TQA_LOCAL, TQA_HUB),
}


def _docs(docs: list[dict], *splits: str):
    return lambda **_: datasets.DatasetDict({s: datasets.Dataset.from_list(docs) for s in splits})


def _ours(name: str, local: list[dict] | None, hub: list[dict], monkeypatch) -> ConfigurableTask:
    cfg = load_yaml(OURS / f"{name}.yaml")
    fn = cfg["custom_dataset"]
    if local is None:  # feed hub docs straight in
        cfg["custom_dataset"] = _docs(hub, "test")
    elif name == "piqa":
        files = {cfg["dataset_kwargs"]["data_file"]: [{k: d[k] for k in ("goal", "sol1", "sol2")} for d in local],
                 cfg["dataset_kwargs"]["labels_file"]: [{"text": lab} for lab in PIQA_LABELS]}
        monkeypatch.setitem(fn.__globals__, "read_records", lambda f, *a, **k: files[f])
    else:  # mapped tasks read through datafiles.local_dataset
        monkeypatch.setattr(datafiles, "read_records", lambda f, *a, **k: [dict(d) for d in local])
    return ConfigurableTask(config=cfg)


def _theirs(path: str, hub: list[dict]) -> ConfigurableTask:
    cfg = load_yaml(LMEVAL_TASKS / path)
    cfg.pop("dataset_path", None)
    cfg.pop("dataset_name", None)
    cfg["custom_dataset"] = _docs(hub, "train", "validation", "test")
    return ConfigurableTask(config=cfg)


def _requests(task: ConfigurableTask, drop_max_gen_toks: int | None = None) -> list[tuple]:
    task.build_all_requests(rank=0, world_size=1)
    out = []
    for i in task.instances:
        args = i.arguments
        if drop_max_gen_toks is not None and isinstance(args[-1], dict):
            assert args[-1].get("max_gen_toks") == drop_max_gen_toks
            args = (*args[:-1], {k: v for k, v in args[-1].items() if k != "max_gen_toks"})
        out.append((i.request_type, i.doc_id, i.idx, i.repeats, repr(args)))
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_requests_match_lm_eval(name: str, monkeypatch) -> None:
    path, local, hub = CASES[name]
    ours, theirs = _ours(name, local, hub, monkeypatch), _theirs(path, hub)
    assert len(ours.eval_docs) == len(hub)
    # the one documented difference: triviaqa_3k generates at most 32 tokens (see its YAML)
    assert _requests(ours, 32 if name == "triviaqa_3k" else None) == _requests(theirs)
    for a, b in zip(ours.eval_docs, theirs.eval_docs):
        assert ours.doc_to_text(a) == theirs.doc_to_text(b)
        assert ours.doc_to_target(a) == theirs.doc_to_target(b)
        if theirs.config.doc_to_choice is not None:
            assert ours.doc_to_choice(a) == theirs.doc_to_choice(b)
    for key in ("output_type", "metric_list", "generation_kwargs", "filter_list", "target_delimiter",
                "fewshot_delimiter", "repeats"):
        a, b = getattr(ours.config, key), getattr(theirs.config, key)
        if key == "generation_kwargs" and a:  # the one documented difference: triviaqa_3k stops at 32 tokens
            a = {k: v for k, v in a.items() if not (k == "max_gen_toks" and v == 32 and name == "triviaqa_3k")}
        assert a == b, key
    assert ours.config.num_fewshot in (None, 0) and theirs.config.num_fewshot in (None, 0)
    pr_ours, pr_theirs = ours.config.process_results, theirs.config.process_results
    assert (pr_ours is None) == (pr_theirs is None)
    if pr_ours is not None:
        assert pr_ours.__code__.co_code == pr_theirs.__code__.co_code


def test_a_changed_prompt_is_caught(monkeypatch) -> None:
    """The comparison can fail: lm-eval's COPA against a premise that kept llm-foundry's comma."""
    path, local, hub = CASES["copa"]
    bad = [{**h, "premise": h["premise"][:-1] + ",."} for h in hub]
    assert _requests(_ours("copa", local, hub, monkeypatch)) != _requests(_theirs(path, bad))


def test_csqa_4way_local_mapping(monkeypatch) -> None:
    """The 4-option file maps to lm-eval's layout with options A-D."""
    task = _ours("commonsense_qa_4way", CSQA_LOCAL, [], monkeypatch)
    doc = task.eval_docs[0]
    assert task.doc_to_text(doc) == ("Question: What do people aim to do at work?\nA. complete job\nB. kill time\n"
                                     "C. wear hats\nD. talk to each other\nAnswer:")
    assert task.doc_to_choice(doc) == ["A", "B", "C", "D"]
    assert task.doc_to_target(doc) == "A"


def test_missing_local_file_falls_back_to_the_hub_split(monkeypatch, tmp_path) -> None:
    """No local file: the declared hub copy is loaded (its split renamed to ours); offline that is a UsageError."""
    from toxbench.harness.core.errors import UsageError

    monkeypatch.setenv("TOXBENCH_DATA", str(tmp_path))
    cfg = load_yaml(OURS / "arc_easy.yaml")
    calls = []

    def fake_hub(path, name=None, split="test", **kw):
        calls.append((path, name, split))
        return datasets.DatasetDict({split: datasets.Dataset.from_list(ARC_HUB)})

    monkeypatch.setattr(datafiles, "hub_dataset", fake_hub)  # the hub fallback lives in datafiles.from_hub
    task = ConfigurableTask(config=cfg)
    assert calls == [("allenai/ai2_arc", "ARC-Easy", "test")]
    assert _requests(task) == _requests(_theirs("arc/arc_easy.yaml", ARC_HUB))

    def offline(*a, **k):
        raise UsageError("cannot load data set from the hub (ConnectionError)")

    monkeypatch.setattr(datafiles, "hub_dataset", offline)
    with pytest.raises(UsageError, match="hub"):
        ConfigurableTask(config=load_yaml(OURS / "piqa.yaml"))
