"""The call: the OpenAI-compatible client, its retry policy, the request cache and the API key.

:mod:`~flows.llm.calls` is what the loop calls: every request of a run, through the cache.
"""
