"""Harness: specs, run store, models, the lm-eval adapter, scorers, metrics, leaderboards, CLI."""
