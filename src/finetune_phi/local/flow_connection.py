"""`phi flow connect`: the flow's Prompt flow connection, made from the stack outputs.

The connection `phi3-endpoint` is a custom connection with config `endpoint` (the scoring
URI) and secret `key`. From the stack, the key is fetched from Azure ML when the command
runs; with `--endpoint URL` it comes from $PHI_ENDPOINT_KEY. Prompt flow keeps the secret
encrypted under ~/.promptflow (or $PF_HOME_DIRECTORY); on a machine without a desktop
keyring, keyrings.alt holds the encryption key.

It also switches Prompt flow's telemetry and tracing off for the project: `pf` reads a
`pf.yaml` in the folder it runs from (or the nearest folder above), under the one in its home;
`phi flow connect` writes there what `pf config set --path . telemetry.enabled=false
trace.destination=none` would. With tracing on, `pf flow test` starts a tracing service on
127.0.0.1:23333 that outlives it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

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


QUIET = {"telemetry.enabled": "false", "trace.destination": "none"}
"""Prompt flow's settings that keep `pf` from sending telemetry or starting a tracing service."""


def quiet_prompt_flow(project: Path) -> list[str]:
    """Write QUIET into `project`/pf.yaml, Prompt flow's project configuration, as `pf config
    set --path` writes it (nested keys, string values), keeping what else it holds. Returns
    the settings that still do not hold from `project`: the home's pf.yaml wins over the
    project's where it sets them.

    The file is written here rather than through Prompt flow's `Configuration`: validating
    `trace.destination` imports its tracing, whose import stores a machine-derived
    installation id into whichever file is being written, the project's."""
    from promptflow._sdk._configuration import Configuration

    path = project / "pf.yaml"
    settings = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
    for setting, value in QUIET.items():
        section, key = setting.split(".")
        settings.setdefault(section, {})[key] = value
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    # What `pf` run from the project reads: the project's file, each top-level section of
    # the home's replacing the project's (Configuration._get_cwd_config).
    effective = dict(settings)
    home = Configuration.GLOBAL_CONFIG_PATH
    if home.is_file():
        effective.update(yaml.safe_load(home.read_text()) or {})
    found = {setting: setting_of(effective, setting) for setting in QUIET}
    return [
        f"{setting}={found[setting]}"
        for setting, value in QUIET.items()
        if str(found[setting]).lower() != value
    ]


def setting_of(config: dict[str, Any], setting: str) -> Any:
    """`telemetry.enabled` of {"telemetry": {"enabled": ...}}, or None."""
    value: Any = config
    for part in setting.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


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
