"""lm-eval log lines that every toxbench run would print and that say nothing about the run: toxbench always
hands HFLM a model object it loaded itself (dtype, device; parallelism goes through `accelerate launch`), its
task data comes through ``custom_dataset`` hooks that take no ``--metadata``, and its task YAMLs keep lm-eval's
own metric lists (tested equal to lm-eval's), whose defaults lm-eval announces at every load. Only these lines
are dropped, by filters on lm-eval's loggers (no logger level is changed); every other warning still shows."""

from __future__ import annotations

import logging

#: logger name -> substrings of the messages dropped from it
EXPECTED = {
    "lm_eval.models.huggingface": ("`pretrained` model kwarg is not of type `str`",
                                   "Passed an already-initialized model through `pretrained`"),
    "lm_eval.api.task": ("Custom kwargs can be passed to `--metadata`", "is not. using default "),
}


class _DropExpected(logging.Filter):
    def __init__(self, needles: tuple[str, ...]) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not any(n in msg for n in self.needles)


def install() -> None:
    """Attach the filters once (idempotent)."""
    for name, needles in EXPECTED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropExpected) for f in logger.filters):
            logger.addFilter(_DropExpected(needles))


install()
