"""``refine export``: a run's trajectories as training data (trajectory, SFT, preference).

It only reads files: nothing here imports the model client (:mod:`flows.llm`).
"""
