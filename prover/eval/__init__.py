"""Evaluation: sample, verify, and report pass@k with intervals that can be compared across runs."""
