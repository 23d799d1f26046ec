"""Defaults shared by the library and the CLI (one value each)."""

DEFAULT_SEED = 1234
DEFAULT_MODEL = "smollm2-135m"
