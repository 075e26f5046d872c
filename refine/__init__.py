"""Shared foundations of prefect-refine that every layer may import (only the error tree)."""
