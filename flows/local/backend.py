"""One model slot: llama-cpp-python's OpenAI-compatible server on a Unix socket.

Started by :mod:`flows.local.server`, one process per slot, never by hand. A Unix socket in a
private folder means no port to race for and nothing reachable from other machines; the slot
dispatcher is the only client. The process ends with its parent, so a killed ``refine`` leaves
no model process behind.
"""

from __future__ import annotations

import argparse
from typing import Any

from flows.ops.parent import exit_with_parent

__all__ = ["disable_weight_repacking", "exit_with_parent", "main"]


def disable_weight_repacking() -> None:
    """Load weights without llama.cpp's extra buffer types (CPU repacking, AMX).

    On Xeon CPUs with AMX, llama.cpp repacks Q4_K weights into an AMX buffer and the first
    decode then crashes with a segmentation fault (llama.cpp issue #20824; seen here with
    llama-cpp-python 0.3.36). llama-cpp-python does not expose ``use_extra_bufts``, so the
    defaults it asks for are wrapped, in this slot process only.
    """
    from llama_cpp import llama_cpp as low_level

    original = low_level.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    low_level.llama_model_default_params = without_extra_buffers


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uds", required=True, help="Unix socket to listen on")
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--alias", required=True, help="model name clients ask for")
    parser.add_argument("--ctx-size", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument(
        "--chat-format", default=None, help="default: the chat template inside the GGUF"
    )
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--repack", action="store_true", help="allow repacked (AMX) weights")
    parser.add_argument(
        "--prompt-cache-mib", type=int, default=0, help="RAM for saved prompt states; 0 = off"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Load the model and serve it on the socket until terminated."""
    args = _parse(argv)
    exit_with_parent(args.parent_pid)
    if not args.repack:
        disable_weight_repacking()
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    from flows.local import prompt_cache
    from flows.local.prompt_meter import CachedTokensMiddleware, PromptMeter

    model = ModelSettings(
        model=args.model,
        model_alias=args.alias,
        n_ctx=args.ctx_size,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        chat_format=args.chat_format,
        logits_all=False,  # logits for every prompt token cost time; answers need only the last
        cache=args.prompt_cache_mib > 0,
        cache_type="ram",
        cache_size=max(1, args.prompt_cache_mib) << 20,
        verbose=False,
    )
    prompt_cache.install()
    meter = PromptMeter()
    meter.install()
    app = create_app(server_settings=ServerSettings(), model_settings=[model])
    uvicorn.run(CachedTokensMiddleware(app, meter), uds=args.uds, log_level="warning")


if __name__ == "__main__":
    main()
