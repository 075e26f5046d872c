"""What the Prefect UI shows of a run: run names and tags, artifacts, progress and summaries."""
