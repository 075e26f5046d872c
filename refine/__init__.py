"""Shared foundations of prefect-refine that every layer may import: the error tree, JSONL
parsing and atomic file writes."""
