"""Hook module the RTP YAMLs reference (``!function utils.x``); the code lives in toxbench.tasks.rtp.task_hooks."""

from toxbench.tasks.rtp.continuations import continuation_dataset, process_clean, process_toxic  # noqa: F401
from toxbench.tasks.rtp.task_hooks import keep_all, process_results, rtp_dataset  # noqa: F401
