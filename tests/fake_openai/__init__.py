"""A fake OpenAI-compatible server on real local HTTP, for tests and benchmarks.

Serves ``POST /v1/chat/completions`` (JSON, or SSE with ``stream: true``),
``GET /v1/models`` (one model, ``fake-model``; any model name is accepted and echoed), and the
Files and Batch APIs (below).

Default answer policy ("echo"), deterministic so equal requests get equal answers::

    content = "draft-" + sha256(canonical_json(messages)).hexdigest()[:10] + " " + last_line

where ``canonical_json`` is compact JSON with sorted keys (``json.dumps(messages,
sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` as UTF-8) and ``last_line`` is the
last non-empty line, stripped and cut to 200 characters, of the last ``user`` message (text parts
joined by newlines; empty when there is none). :func:`default_answer` computes it. Tokens are
whitespace-split words: of all message contents for ``prompt_tokens``, of the answer for
``completion_tokens``; ``cached_tokens`` is always 0.

A request that carries an integer ``seed`` has ``"\nseed=<seed>"`` appended to its canonical
JSON, for the hash and for script matches: distinct seeds get distinct default answers, and
``script([...], match="seed=2")`` answers only the requests with seed 2. A request with ``n`` > 1
gets n choices: choice 0 as above, each choice i after it the next scripted reply for the
request (its content and finish reason), else the default answer with ``"\nchoice=<i>"``
appended to the hashed JSON; ``completion_tokens`` counts all of them. Streams send one choice.

Behaviour is programmed with the same methods in-process (:class:`FakeOpenAI`) and for a server
in another process (:class:`FakeOpenAIControl`, over ``/_control/*``): ``script`` queues
:class:`Reply` objects, consumed first-in first-out by requests whose ``canonical_json(messages)``
contains ``match`` (so quotes and newlines in it are JSON-escaped); the first non-empty matching
queue in insertion order wins. Requests no script answers may be failed by ``fail_rate``
(seeded, so the same request order fails the same requests) and otherwise get the default policy.
``set_latency`` delays every chat request; ``token_rate`` adds completion_tokens / rate seconds.

Every ``/v1`` request is logged (:class:`LogEntry`): headers as received (``authorization``
included), parsed body, status, content answered, whether a script answered it.

Files and Batch APIs (in memory, as OpenAI answers them; all logged like other ``/v1`` requests,
an upload's log body being ``{"purpose", "filename", "bytes"}``): ``POST /v1/files`` (multipart
``file`` and ``purpose``), ``GET /v1/files`` (``purpose``, ``order``, ``limit``, ``after``),
``GET``/``DELETE /v1/files/{id}``, ``GET /v1/files/{id}/content``; ``POST /v1/batches`` (only
``endpoint`` ``/v1/chat/completions``, ``completion_window`` ``24h``), ``GET /v1/batches``
(newest first, ``limit`` 1-100, ``after``), ``GET /v1/batches/{id}``,
``POST /v1/batches/{id}/cancel``. A batch goes ``validating`` -> ``in_progress`` ->
``finalizing`` -> ``completed`` on the server's loop, one line at a time, each line answered
exactly as ``POST /v1/chat/completions`` answers its body (same scripts consumed, same faults)
and logged as a chat request with ``batch_id`` set. 200 answers go to the output file; other
statuses (with their error body), hangs (``error.code`` ``request_timeout``) and dropped
connections (``server_error``) go to the error file. An input file that breaks OpenAI's rules
(unique ``custom_id``, ``method`` POST, ``url`` the batch's endpoint, a ``body`` object, one
model, at most 50,000 requests and 200 MB) fails the batch (``errors.data`` with ``line``).
A cancel answers ``cancelling``, then the batch is ``cancelled`` with the answered lines in its
files and each unanswered one in the error file (``batch_cancelled``); cancelling a finished
batch is a 409. :class:`BatchBehaviour` sets the timing and faults: ``set_batch_behaviour`` for
every batch, ``script_batches`` for the next ones (one each, first-in first-out); ``reset``
forgets files, batches and behaviours.

Run out of process (for benchmarks and kill/resume tests)::

    python -m tests.fake_openai --port 0 [--latency-ms 50] [--host 127.0.0.1]

prints ``FAKE_OPENAI_BASE_URL=http://127.0.0.1:PORT/v1`` once it accepts connections and serves
until SIGTERM or SIGINT, then exits with status 0.
"""

from tests.fake_openai._control import FakeOpenAIControl
from tests.fake_openai._models import BatchBehaviour, LogEntry, Reply
from tests.fake_openai._policy import canonical_json, default_answer
from tests.fake_openai._server import FakeOpenAI

__all__ = [
    "BatchBehaviour",
    "FakeOpenAI",
    "FakeOpenAIControl",
    "LogEntry",
    "Reply",
    "canonical_json",
    "default_answer",
]
