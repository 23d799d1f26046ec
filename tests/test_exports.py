"""Issue 26: `toxbench export-results` in the formats other tools read, each checked by that tool's own reader
or schema: lm-eval's result utilities, Every Eval Ever's JSON schemas (from its PyPI package), huggingface_hub's
eval-results parser."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import yaml
from click.testing import CliRunner
from toxbench.harness.cli import main

RUN = Path(__file__).parent / "fixtures" / "runs" / "paper" / "smollm2-135m__aura__1b2c3d4e5f"


def _export(fmt: str, out: Path, run: Path = RUN) -> list[Path]:
    res = CliRunner().invoke(main, ["export-results", str(run), "--format", fmt, "--out", str(out)])
    assert res.exit_code == 0, res.output
    return [Path(line.split(" ", 1)[1]) for line in res.output.splitlines() if line.startswith("wrote ")]


def test_lm_eval_files_read_by_lm_evals_own_utilities(tmp_path):
    from lm_eval import utils

    files = [str(p) for p in _export("lm-eval", tmp_path)]
    (results,) = utils.get_results_filenames(files)
    samples = utils.get_sample_results_filenames(files)
    assert samples and {utils.get_file_task_name(Path(s).name) for s in samples} >= {"rtp_challenging"}
    assert utils.get_latest_filename(samples)
    doc = json.loads(Path(results).read_text())
    for key in ("results", "groups", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config",
                "git_hash", "date"):
        assert key in doc, key
    table = utils.make_table(doc)
    value = doc["results"]["rtp_challenging"]["toxic_fraction,none"]
    assert "rtp_challenging" in table and f"{value:.4f}" in table
    proto = doc["configs"]["rtp_challenging"]["toxbench"]
    assert proto["protocol"]["k"] and proto["ci"]["toxic_fraction"] and doc["higher_is_better"]["rtp_challenging"][
        "toxic_fraction"] is False
    assert doc["config"]["toxbench"]["protocol"]["intervention"]["name"] == "aura"


def _tiny_run(tiny_llama_dir, tmp_path) -> Path:
    data = tmp_path / "rtp.jsonl"
    data.write_text("".join(json.dumps({"prompt": {"text": t, "toxicity": 0.3 * i}}) + "\n"
                            for i, t in enumerate(["the film was", "you are a", "we went"])))
    res = CliRunner().invoke(main, ["run", "--model", str(tiny_llama_dir), "-t", "rtp", "--data", str(data), "--k",
                                    "2", "--max-new-tokens", "3", "--scorer", "profanity-check", "--device", "cpu",
                                    "-o", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    return next((tmp_path / "runs").iterdir())


def test_eee_records_validate_against_every_eval_evers_schemas(tmp_path, tiny_llama_dir, cache_dir):
    import jsonschema
    schemas = resources.files("every_eval_ever.schemas")
    aggregate = json.loads(schemas.joinpath("eval.schema.json").read_text())
    instance = json.loads(schemas.joinpath("instance_level_eval.schema.json").read_text())
    record_path, rows_path = _export("eee", tmp_path / "eee", _tiny_run(tiny_llama_dir, tmp_path))
    record = json.loads(record_path.read_text())
    jsonschema.validate(record, aggregate)
    rows = [json.loads(x) for x in rows_path.read_text().splitlines()]
    assert rows and record["detailed_evaluation_results"]["total_rows"] == len(rows)
    for row in rows:
        jsonschema.validate(row, instance)
    tf = next(r for r in record["evaluation_results"] if r["evaluation_result_id"] == "rtp/toxic_fraction")
    assert tf["metric_config"]["lower_is_better"] is True and "confidence_interval" in tf["score_details"]["uncertainty"]


def test_hub_eval_results_parse_with_huggingface_hub(tmp_path, tiny_llama_dir):
    import shutil

    from huggingface_hub import parse_eval_result_entries

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_llama_dir, ckpt)
    _export("hub", ckpt)
    entries = parse_eval_result_entries(yaml.safe_load((ckpt / ".eval_results" / "rtp_challenging.yaml").read_text()))
    assert {e.task_id for e in entries} >= {"toxic_fraction"} and all(e.dataset_id.startswith("toxbench/")
                                                                       for e in entries)
    _export("hub", ckpt)  # again: the README section is replaced, not repeated
    readme = (ckpt / "README.md").read_text()
    assert readme.count("## Evaluation (toxbench)") == 1 and "toxic_fraction" in readme


def test_bad_format_and_target_are_one_line(tmp_path):
    res = CliRunner().invoke(main, ["export-results", str(RUN), "--format", "lmeval", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "Did you mean 'lm-eval'" in res.output
    res = CliRunner().invoke(main, ["export-results", str(RUN), "--format", "hub", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "checkpoint dir" in res.output
