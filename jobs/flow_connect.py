"""`phi flow connect`: the flow's Prompt flow connection, made from the stack outputs.

The connection `phi3-endpoint` is a custom connection with config `endpoint` (the scoring
URI) and secret `key`. From the stack, the key is fetched from Azure ML when the command
runs; with `--endpoint URL` it comes from $PHI_ENDPOINT_KEY. Prompt flow keeps the secret
encrypted under ~/.promptflow (or $PF_HOME_DIRECTORY); on a machine without a desktop
keyring, keyrings.alt holds the encryption key.
"""

from __future__ import annotations

import os

CONNECTION_NAME = "phi3-endpoint"
KEY_VARIABLE = "PHI_ENDPOINT_KEY"


class ConnectError(ValueError):
    pass


def key_from_environment(environ: dict[str, str] | None = None) -> str:
    key = (environ if environ is not None else dict(os.environ)).get(KEY_VARIABLE, "")
    if not key:
        raise ConnectError(
            f"--endpoint needs the key in ${KEY_VARIABLE} (a local `phi serve` checks no key: "
            f"set {KEY_VARIABLE}=local)"
        )
    return key


def connect(endpoint: str, key: str, name: str = CONNECTION_NAME, api: str = "score") -> str:
    """Create or update the connection; returns its name. Never prints the key."""
    if not endpoint.startswith(("https://", "http://")):
        raise ConnectError(f"endpoint {endpoint!r}: must be an http(s) scoring URI")
    from promptflow.client import PFClient
    from promptflow.entities import CustomConnection

    connection = CustomConnection(
        name=name, configs={"endpoint": endpoint, "api": api}, secrets={"key": key}
    )
    PFClient().connections.create_or_update(connection)
    return name
