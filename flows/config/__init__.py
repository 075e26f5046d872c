"""Settings: one pydantic model per concern, read in one place.

:mod:`~flows.config.run` (``RunConfig`` and the environment), :mod:`~flows.config.endpoint`
(endpoint and retry), :mod:`~flows.config.loop` (validators, rewards, stop rules, critique,
sandbox) and :mod:`~flows.config.local` (the embedded model).
"""
