"""Issue 27.3: every `toxbench` command in the README's bash blocks is executed (through Click's runner): `run`,
`fit`, `export` and `suite` with --dry-run (every input checked, nothing loaded or written), `list` for real,
the rest with --help (their options parsed). A command that takes an earlier command's output (`"$DPO"`) can
only be parsed (--help); environment placeholders of cluster examples get a value."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from toxbench.harness.cli import main

README = Path(__file__).parents[1] / "README.md"
DRY_RUN = {"run", "fit", "export", "suite"}
ENV = {"SLURM_ARRAY_TASK_ID": "0"}
FOR_REAL = {"list"}


def readme_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            line = re.sub(r"^[A-Z_]+=\$\((.*?)(\|[^)]*)?\)$", r"\1", line)  # VAR=$(toxbench ... | tail)
            for part in line.split("&&"):
                argv = shlex.split(part.strip())
                if not argv or argv[0] != "toxbench":
                    continue
                # `list models|interventions|...` is notation for alternatives: each one is run
                choices = [tok.split("|") if "|" in tok else [tok] for tok in argv[1:]]
                out.extend(list(c) for c in itertools.product(*choices))
    return out


COMMANDS = readme_commands()


def test_the_readme_has_commands():
    assert len(COMMANDS) >= 10 and any(c[0] == "run" for c in COMMANDS)


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_readme_command_runs(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(README.parent)
    monkeypatch.setenv("TOXBENCH_CACHE", str(tmp_path / "cache"))
    for k, v in ENV.items():
        argv = [a.replace("${" + k + "}", v) for a in argv]
    if any("$" in a for a in argv):  # an earlier command's output: parse only
        args = [*argv, "--help"]
    elif argv[0] in DRY_RUN:
        args = [*argv, "--dry-run"]
    elif argv[0] in FOR_REAL:
        args = argv
    else:
        args = [*argv, "--help"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, f"toxbench {' '.join(args)}\n{res.output}"
