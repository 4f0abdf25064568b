"""`phi flow connect`: the flow's Prompt flow connection, made from the stack outputs.

The connection `phi3-endpoint` is a custom connection with config `endpoint` (the scoring
URI) and secret `key`. From the stack, the key is fetched from Azure ML when the command
runs; with `--endpoint URL` it comes from $PHI_ENDPOINT_KEY. Prompt flow keeps the secret
encrypted under ~/.promptflow (or $PF_HOME_DIRECTORY); on a machine without a desktop
keyring, keyrings.alt holds the encryption key.
"""

from __future__ import annotations

import os

from finetune_phi.core.contract import FLOW_CONNECTION
from finetune_phi.core.errors import UsageError

KEY_VARIABLE = "PHI_ENDPOINT_KEY"


def key_from_environment(environ: dict[str, str] | None = None) -> str:
    key = (environ if environ is not None else dict(os.environ)).get(KEY_VARIABLE, "")
    if not key:
        raise UsageError(
            f"--endpoint needs the key in ${KEY_VARIABLE} (a local `phi serve` checks no key: "
            f"set {KEY_VARIABLE}=local)"
        )
    return key


def connect(endpoint: str, key: str, name: str = FLOW_CONNECTION, api: str = "score") -> str:
    """Create or update the connection; returns its name. Never prints the key."""
    if not endpoint.startswith(("https://", "http://")):
        raise UsageError(f"endpoint {endpoint!r}: must be an http(s) scoring URI")
    from promptflow.client import PFClient
    from promptflow.entities import CustomConnection

    connection = CustomConnection(
        name=name, configs={"endpoint": endpoint, "api": api}, secrets={"key": key}
    )
    PFClient().connections.create_or_update(connection)
    return name
