"""The sandbox that runs generated code against its tests, never in the host process.

:mod:`~postprocess.sandbox.run` runs code and tests (its public face), built from
:mod:`~postprocess.sandbox.command` (the bubblewrap and prlimit command lines),
:mod:`~postprocess.sandbox.process` (starting, limiting and killing the process group),
:mod:`~postprocess.sandbox.runner` (the script that runs inside),
:mod:`~postprocess.sandbox.models` (tests, limits and results), :mod:`~postprocess.sandbox.report`
(what a failing test tells the model), :mod:`~postprocess.sandbox.checks` (the ``tests_pass``
validator and ``test_pass_rate`` reward over it) and :mod:`~postprocess.sandbox.hidden` (the
``hidden_test_pass_rate`` reward, from hidden tests in the row's ``reference``).
"""
