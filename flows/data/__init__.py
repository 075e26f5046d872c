"""What flows through a run and what it reads and writes: records, datasets, the output file."""
