"""Where a run's API key comes from: a Prefect ``Secret`` block, the config file, or the
environment; never a flow parameter.

A deployment names the block (``endpoint.api_key_secret``), which is safe to show: the key
itself is read by the flow run, on the worker, when the run opens its client. Without a block
name the worker's environment (``OPENAI_API_KEY`` / ``REFINE_API_KEY``) or the config file's
``[endpoint] api_key`` is used, as for ``refine run``.
"""

from __future__ import annotations

from pydantic import SecretStr

from flows.config.run import RunConfig, resolve_api_key
from refine.errors import ConfigError

__all__ = ["api_key_for", "save_api_key_secret"]


async def api_key_for(config: RunConfig) -> SecretStr | None:
    """The key to send, or None: the named Secret block first, else file or environment.

    Raises ConfigError naming the block (never its value) when it cannot be read.
    """
    name = config.endpoint.api_key_secret
    if not name:
        return resolve_api_key(config.config_file)
    from prefect.blocks.system import Secret

    try:
        block: Secret[str] = await Secret.aload(name)  # type: ignore[assignment]
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"Prefect Secret block {name!r} could not be read ({type(exc).__name__}): create it "
            f"with `refine api-key-secret {name}` on a machine that has the key"
        ) from None
    return SecretStr(str(block.get()))


def save_api_key_secret(name: str, key: SecretStr, overwrite: bool = True) -> None:
    """Store ``key`` in the Prefect Secret block ``name`` (on the server PREFECT_API_URL names)."""
    from prefect.blocks.system import Secret

    Secret(value=key).save(name, overwrite=overwrite)
