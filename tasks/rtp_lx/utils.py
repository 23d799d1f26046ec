"""Hook module the RTP-LX YAMLs reference (``!function utils.x``); the code lives in toxbench.tasks.rtp.task_hooks."""

from toxbench.tasks.rtp.task_hooks import keep_all, pairwise_dataset, process_results, rtp_lx_dataset  # noqa: F401
