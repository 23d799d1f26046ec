"""Defaults shared by the library and the CLI (one value each)."""

DEFAULT_SEED = 1234
DEFAULT_MODEL = "smollm2-135m"
DEFAULT_BATCH_SIZE = 16
#: the grouped cross-validation folds of the scorers' agreement figures (not a sampling seed)
DEFAULT_FOLDS_SEED = 0
