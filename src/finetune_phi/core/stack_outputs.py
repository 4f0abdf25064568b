"""Where `phi` finds the workspace: the stack outputs, never IDs copied by hand.

Three sources, in this order of precedence: `--outputs FILE` (what
`pulumi stack output --json --show-secrets` printed), `--stack NAME` (asks the Pulumi CLI),
or environment variables named after the outputs (`PHI_WORKSPACE_NAME`, ...; the older
`FINETUNE_PHI_*` names still work, with a warning).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_phi.core.contract import OUTPUTS
from finetune_phi.core.errors import UsageError
from finetune_phi.core.renames import renamed

ENV_PREFIX = "PHI_"
OLD_ENV_PREFIX = "FINETUNE_PHI_"
"""The prefix before 0.2 (CHANGELOG.md)."""
# Outputs that are null until a config switch turns their resource on.
_NO_FOUNDRY = "the stack has no Foundry project: `pulumi config set foundry true && pulumi up`"
SWITCHED_OFF = {
    "cpuComputeName": "the stack has no CPU cluster: `pulumi config set cpuCluster true && pulumi up`",
    "foundryProjectName": _NO_FOUNDRY,
    "foundryProjectWorkspaceId": _NO_FOUNDRY,
    "contentSafetyEndpoint": "the stack has no Content Safety account: "
    "`pulumi config set contentSafety true && pulumi up`",
}


class OutputsError(UsageError):
    """The stack outputs could not be read, or lack what a command needs."""


def env_name(output: str, prefix: str = ENV_PREFIX) -> str:
    """`workspaceName` -> `PHI_WORKSPACE_NAME`."""
    return prefix + re.sub(r"(?<!^)([A-Z])", r"_\1", output).upper()


@dataclass(frozen=True)
class Workspace:
    """An Azure ML workspace (or Foundry project) named by the stack outputs."""

    subscription_id: str
    resource_group: str
    name: str

    @property
    def state_key(self) -> str:
        """Where `finetune_phi.core.state` keeps what one command leaves for the next."""
        return f"{self.subscription_id}/{self.resource_group}/{self.name}"

    def client(self) -> Any:
        """An MLClient on it, signed in with DefaultAzureCredential."""
        from azure.ai.ml import MLClient
        from azure.identity import DefaultAzureCredential

        return MLClient(
            DefaultAzureCredential(), self.subscription_id, self.resource_group, self.name
        )


@dataclass(frozen=True)
class StackOutputs:
    values: Mapping[str, Any]
    source: str

    def require(self, *keys: str) -> dict[str, str]:
        """The named outputs as strings; OutputsError naming each one that is missing."""
        undocumented = [key for key in keys if key not in OUTPUTS]
        if undocumented:  # a typo in our own code, not the user's fault
            raise KeyError(f"not in finetune_phi.core.contract.OUTPUTS: {', '.join(undocumented)}")
        missing = [key for key in keys if not self.values.get(key)]
        if missing:
            hint = ", ".join(f"{key} (or ${env_name(key)})" for key in missing)
            advice = "".join(f"; {SWITCHED_OFF[key]}" for key in missing if key in SWITCHED_OFF)
            raise OutputsError(f"the stack outputs from {self.source} lack {hint}{advice}")
        return {key: str(self.values[key]) for key in keys}

    def workspace(self, name_output: str = "workspaceName") -> Workspace:
        """The workspace whose name is the output `name_output` (or the Foundry project's)."""
        found = self.require("subscriptionId", "resourceGroupName", name_output)
        return Workspace(found["subscriptionId"], found["resourceGroupName"], found[name_output])


def from_file(path: Path) -> StackOutputs:
    try:
        values = json.loads(path.read_text())
    except OSError as error:
        raise OutputsError(f"--outputs {path}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise OutputsError(
            f"--outputs {path}: not JSON ({error.msg} at line {error.lineno})"
        ) from error
    if not isinstance(values, dict):
        raise OutputsError(f"--outputs {path}: expected a JSON object of stack outputs")
    return StackOutputs(values, str(path))


def from_stack(stack: str) -> StackOutputs:
    try:
        result = subprocess.run(
            ["pulumi", "stack", "output", "--json", "--stack", stack],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as error:
        raise OutputsError(
            "--stack needs the Pulumi CLI on PATH; or save the outputs once with "
            "`pulumi stack output --json > outputs.json` and pass --outputs outputs.json"
        ) from error
    if result.returncode != 0:
        raise OutputsError(f"pulumi stack output --stack {stack} failed: {result.stderr.strip()}")
    try:
        values = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise OutputsError(
            f"pulumi stack output --stack {stack} printed no JSON ({error.msg})"
        ) from None
    return StackOutputs(values, f"stack {stack}")


def from_environment(environ: Mapping[str, str] = os.environ) -> StackOutputs:
    values = {}
    for key in OUTPUTS:
        name, old = env_name(key), env_name(key, OLD_ENV_PREFIX)
        if name in environ:
            values[key] = environ[name]
        elif old in environ:
            renamed(f"${old}", f"${name}")
            values[key] = environ[old]
    return StackOutputs(values, f"environment variables {ENV_PREFIX}*")


def read(stack: str | None, outputs_file: Path | None) -> StackOutputs:
    if outputs_file is not None:
        return from_file(outputs_file)
    if stack is not None:
        return from_stack(stack)
    return from_environment()
