"""Scorers: text -> toxicity probability, behind one registry."""
