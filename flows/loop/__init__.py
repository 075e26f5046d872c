"""The algorithm, one step at a time: render the prompt, check the draft, stop, select.

No Prefect and no I/O of its own: :mod:`~flows.loop.render` turns (item, drafts, step, role)
into messages, :mod:`~flows.loop.refiner` runs a step (its judge and critique requests in
:mod:`~flows.loop.side`), :mod:`~flows.loop.checks` validates and
scores a draft, :mod:`~flows.loop.stopping` and :mod:`~flows.loop.select` decide when to stop and
which draft is the output, :mod:`~flows.loop.plan` and :mod:`~flows.loop.defaults` resolve the
loop's configuration, :mod:`~flows.loop.preflight` checks the input before any request and
:mod:`~flows.loop.assemble` builds a run's refiner.
"""
