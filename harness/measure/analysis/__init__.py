"""Mechanistic analyses (probe, toxic vectors, activation shift, retrieval)."""
