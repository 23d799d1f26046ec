"""Click commands contributed per feature; harness/cli.py mounts them."""
