"""Evaluation utilities: procedural tasks, scoring and harness adapters."""
