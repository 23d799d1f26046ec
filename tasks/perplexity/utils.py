"""Hooks for perplexity tasks: data from the data dir, lm-eval's own detokenizer and metrics."""

from lm_eval.tasks.wikitext.preprocess_wikitext import process_results, wikitext_detokenizer  # noqa: F401

from toxbench.tasks.datafiles import local_dataset  # noqa: F401
