"""Run directories (HELM style): ``runs/<run_id>/`` with run_spec.json, env.json, samples_<task>.jsonl,
generations_<task>.jsonl (resume cache) and results.json — every file written atomically."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..core.hardware import kernel_set
from ..core.io import atomic_write_json, atomic_write_text, read_jsonl
from ..core.paths import REPO_ROOT
from .lock import LOCK_NAME
from .runspec import RunSpec

TRACKED_PACKAGES = ("toxbench", "torch", "transformers", "lm_eval", "datasets", "numpy", "peft", "trl", "vllm",
                    "accelerate", "safetensors", "h5py")


def library_versions() -> dict[str, str]:
    out = {}
    for pkg in TRACKED_PACKAGES:
        try:
            out[pkg] = version(pkg.replace("_", "-") if pkg == "lm_eval" else pkg)
        except PackageNotFoundError:
            continue
    return out


def git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except Exception:
        return None


def env_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "versions": library_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_sha": git_sha(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "kernels": kernel_set(device),
    }
    if torch.cuda.is_available():
        info["cuda"] = {"device_name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                        "cuda_version": torch.version.cuda}
    return info


@dataclass
class RunDir:
    """The one place that knows a run dir's file names."""

    path: Path

    SPEC = "run_spec.json"
    RESULTS = "results.json"
    ENV = "env.json"
    LOCK = LOCK_NAME
    #: what a run writes before computing anything; a new run dir holding only these is a stub
    STUB_FILES = frozenset({SPEC, ENV, LOCK})

    @classmethod
    def for_spec(cls, spec: RunSpec) -> RunDir:
        return cls(Path(spec.output_dir) / spec.run_id())

    @classmethod
    def is_run_dir(cls, path: Path) -> bool:
        return (path / cls.RESULTS).is_file() or (path / cls.SPEC).is_file()

    @classmethod
    def find_below(cls, folder: Path) -> list[Path]:
        """Run dirs anywhere below ``folder``, sorted."""
        return sorted({f.parent for name in (cls.RESULTS, cls.SPEC) for f in folder.rglob(name)})

    @property
    def spec_file(self) -> Path:
        return self.path / self.SPEC

    @property
    def results_file(self) -> Path:
        return self.path / self.RESULTS

    def samples_file(self, task: str) -> Path:
        return self.path / f"samples_{task}.jsonl"

    def generations_file(self, task: str) -> Path:
        """The resume cache of a generation task's samples."""
        return self.path / f"generations_{task}.jsonl"

    def generation_caches(self) -> list[Path]:
        return sorted(self.path.glob("generations_*.jsonl"))

    def exists(self) -> bool:
        return self.spec_file.is_file()

    def _read_json(self, path: Path, way_out: str) -> dict[str, Any]:
        """A run dir's JSON file; a damaged one (torn, edited, not UTF-8) is one line naming it and the way out."""
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            what = f"{e.msg} at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else "not UTF-8 text"
            raise UsageError(f"{str(path)!r} is corrupted ({what}); {way_out}") from None
        if not isinstance(obj, dict):
            raise UsageError(f"{str(path)!r} is corrupted (not a JSON object); {way_out}")
        return obj

    def read_spec_file(self) -> dict[str, Any]:
        """run_spec.json as written by ``write_spec`` (fingerprint, run_id, spec)."""
        return self._read_json(self.spec_file, "delete it (the next run of this spec writes it again, keeping "
                                               "the results) or rerun with --force to recompute the run")

    def load_spec(self) -> RunSpec:
        if not self.spec_file.is_file():
            raise UsageError(f"{str(self.path)!r} is not a toxbench run directory (no run_spec.json)")
        raw = self.read_spec_file()
        if not isinstance(raw.get("spec"), dict):
            raise UsageError(f"{str(self.spec_file)!r} is corrupted (no 'spec'); rerun with --force to recompute")
        return RunSpec.from_dict(raw["spec"])

    def load_results(self) -> dict[str, Any]:
        if not self.results_file.is_file():
            return {}
        return self._read_json(self.results_file, "rerun with --force to recompute the run, or delete the file to "
                                                  "recompute the metrics from the cached generations")

    def read_results(self) -> dict[str, Any]:
        """results.json of a run that must have one (``load_results`` gives {} for a run not started yet)."""
        if not self.results_file.is_file():
            raise UsageError(f"{str(self.path)!r} is not a toxbench run directory (no results.json)")
        return self.load_results()

    def save_results(self, results: dict[str, Any]) -> None:
        atomic_write_json(self.results_file, results)

    def write_spec(self, spec: RunSpec) -> None:
        atomic_write_json(self.spec_file, {"fingerprint": spec.fingerprint(), "run_id": spec.run_id(),
                                           "spec": spec.to_dict()})

    def write_env(self, device: str) -> None:
        atomic_write_json(self.path / self.ENV, env_info(device))

    def write_samples(self, task: str, rows: list[dict]) -> None:
        text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
        atomic_write_text(self.samples_file(task), text)

    def read_samples(self, task: str) -> list[dict]:
        f = self.samples_file(task)
        return read_jsonl(f, torn_tail=True) if f.is_file() else []
