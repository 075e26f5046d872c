"""``python -m tests.fake_openai``: serve the fake in its own process until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import sys

from tests.fake_openai._server import FakeOpenAI


def main(argv: list[str] | None = None) -> None:
    """Parse flags, serve, and print the base URL line once connections are accepted."""
    parser = argparse.ArgumentParser(prog="python -m tests.fake_openai", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay of every request")
    parser.add_argument("--token-rate", type=float, default=None, help="completion tokens/s")
    parser.add_argument("--max-log", type=int, default=None, help="keep only the last N entries")
    parser.add_argument("--keep-alive-s", type=float, default=30.0, help="idle keep-alive limit")
    args = parser.parse_args(argv)
    server = FakeOpenAI(
        args.host,
        args.port,
        latency=args.latency_ms / 1000,
        token_rate=args.token_rate,
        max_log=args.max_log,
        keep_alive_s=args.keep_alive_s,
    )

    def announce() -> None:
        print(f"FAKE_OPENAI_BASE_URL={server.base_url}", flush=True)

    server.serve_forever(announce)
    sys.exit(0)


if __name__ == "__main__":
    main()
