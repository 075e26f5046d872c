"""A fake OpenAI-compatible server on real local HTTP, for tests and benchmarks.

Serves ``POST /v1/chat/completions`` (JSON, or SSE with ``stream: true``) and
``GET /v1/models`` (one model, ``fake-model``; any model name is accepted and echoed).

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

Run out of process (for benchmarks and kill/resume tests)::

    python -m tests.fake_openai --port 0 [--latency-ms 50] [--host 127.0.0.1]

prints ``FAKE_OPENAI_BASE_URL=http://127.0.0.1:PORT/v1`` once it accepts connections and serves
until SIGTERM or SIGINT, then exits with status 0.
"""

from tests.fake_openai._control import FakeOpenAIControl
from tests.fake_openai._models import LogEntry, Reply
from tests.fake_openai._policy import canonical_json, default_answer
from tests.fake_openai._server import FakeOpenAI

__all__ = [
    "FakeOpenAI",
    "FakeOpenAIControl",
    "LogEntry",
    "Reply",
    "canonical_json",
    "default_answer",
]
