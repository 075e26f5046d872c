"""Orchestration of prefect-refine: settings, records, the model client, the cache and the flows.

The only package that imports Prefect. Entry points: :func:`flows.batch.refine_batch` (the
batch flow that deployments name as ``flows/batch.py:refine_batch``), :func:`flows.batch.refine_one`
and the ``refine`` CLI in :mod:`flows.cli`.
"""
