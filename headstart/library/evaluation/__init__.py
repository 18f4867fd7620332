"""Evaluation: test metrics, both sides of the gate scored on one split, and the pure gate."""
