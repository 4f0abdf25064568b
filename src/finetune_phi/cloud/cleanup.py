"""Tear an environment down so that the same stack can be brought up again at once.

`pulumi destroy` alone leaves names taken: Azure keeps the ML workspace (14 days), the
Foundry project and hub when the stack has them (ML workspaces too), the key vault (its
retention period) and the Log Analytics workspace soft-deleted, and the next `pulumi up`
with the same, stack-stable names fails. With `--purge` this command:

1. deletes the Foundry project, then its hub, then the ML workspace, each permanently
   through azure-ai-ml's `workspaces.begin_delete(permanently_delete=True)` (which reads
   the workspace, then sends `DELETE ...?forceToPurge=true`),
2. deletes the Log Analytics workspace with `force=true` (no soft-delete),
3. runs `pulumi destroy` for everything else,
4. purges the soft-deleted key vault (impossible when purge protection is on; then the
   name stays taken until its retention ends and the command says so).

Steps 2 and 4 go through `ArmClient`: this project's environments have no SDK for Log
Analytics or Key Vault management.

Usage:
    phi cleanup --stack dev --purge --dry-run                      # print the plan, send nothing
    phi cleanup --stack dev --purge --yes                          # do it
    phi cleanup --stack dev --outputs outputs.json --purge         # outputs saved earlier
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from finetune_phi.cloud import ml_client
from finetune_phi.core.arm import ARM_ENDPOINT, ARM_SCOPE, ArmClient, ArmError, segment
from finetune_phi.core.azure_facts import API_VERSIONS
from finetune_phi.core.naming import RULES

if TYPE_CHECKING:
    from azure.ai.ml.operations import WorkspaceOperations
    from azure.core.credentials import TokenCredential

_REQUIRED_OUTPUTS = (
    "subscriptionId",
    "resourceGroupName",
    "location",
    "workspaceName",
    "logAnalyticsName",
    "keyVaultName",
)


class CleanupError(ArmError):
    """A step failed; the message says which and what to do."""


@dataclass(frozen=True)
class HttpStep:
    description: str
    method: str
    path: str
    """ARM path with its query string, relative to the ARM endpoint."""
    when: str
    """"before" or "after" `pulumi destroy`."""

    def sent(self) -> list[tuple[str, str, str]]:
        """Method, path and why, of each request the step sends, in order; polls aside."""
        return [(self.method, self.path, self.description)]


@dataclass(frozen=True)
class WorkspacePurge(HttpStep):
    """An ML workspace (a Foundry hub or project is one too), deleted through azure-ai-ml,
    which reads it (GET `read`) before it sends the DELETE."""

    name: str
    read: str

    def sent(self) -> list[tuple[str, str, str]]:
        return [("GET", self.read, f"azure-ai-ml reads {self.name} first"), *super().sent()]


def plan(outputs: Mapping[str, Any]) -> list[HttpStep]:
    """The purge requests for a stack, from its outputs."""
    missing = [key for key in _REQUIRED_OUTPUTS if not outputs.get(key)]
    if missing:
        raise CleanupError(
            f"stack outputs lack {', '.join(missing)}: is this a finetune-phi stack that is up?"
        )
    checked = checked_outputs(outputs)
    sub, group = segment(checked["subscriptionId"]), segment(checked["resourceGroupName"])
    base = f"/subscriptions/{sub}/resourceGroups/{group}/providers"
    logs = API_VERSIONS["Microsoft.OperationalInsights"]
    vault = API_VERSIONS["Microsoft.KeyVault"]

    def purge_workspace(what: str, name: str) -> WorkspacePurge:
        path = (
            f"{base}/Microsoft.MachineLearningServices/workspaces/{segment(name)}"
            f"?api-version={API_VERSIONS['Microsoft.MachineLearningServices']}"
        )
        return WorkspacePurge(
            f"delete {what} {name} permanently",
            "DELETE",
            f"{path}&forceToPurge=true",
            "before",
            name=name,
            read=path,
        )

    # The Foundry project and hub are ML workspaces too, soft-deleted alike; the project
    # goes before the hub it belongs to.
    foundry = [
        purge_workspace(what, checked[key])
        for what, key in (
            ("Foundry project", "foundryProjectName"),
            ("Foundry hub", "foundryHubName"),
        )
        if outputs.get(key)
    ]
    return [
        *foundry,
        purge_workspace("ML workspace", checked["workspaceName"]),
        HttpStep(
            f"delete Log Analytics workspace {checked['logAnalyticsName']} permanently",
            "DELETE",
            f"{base}/Microsoft.OperationalInsights/workspaces/{segment(checked['logAnalyticsName'])}"
            f"?api-version={logs}&force=true",
            "before",
        ),
        HttpStep(
            f"purge soft-deleted key vault {checked['keyVaultName']}",
            "POST",
            f"/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/{segment(checked['location'])}"
            f"/deletedVaults/{segment(checked['keyVaultName'])}/purge?api-version={vault}",
            "after",
        ),
    ]


# The outputs a purge URL names, each checked against its naming rule (finetune_phi.core.naming.RULES).
_NAMED_OUTPUTS = (
    "resourceGroupName",
    "workspaceName",
    "foundryProjectName",
    "foundryHubName",
    "logAnalyticsName",
    "keyVaultName",
)
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def checked_outputs(outputs: Mapping[str, Any]) -> dict[str, str]:
    """The outputs a purge URL is built from, each checked against Azure's naming rule, so
    no value can change which resource a request names."""
    problems = []
    checked = {key: str(value) for key, value in outputs.items() if isinstance(value, str)}
    if not _GUID.fullmatch(checked.get("subscriptionId", "")):
        problems.append(f"subscriptionId = {outputs.get('subscriptionId')!r}: must be a GUID")
    if not re.fullmatch(r"[a-z][a-z0-9]{2,39}", checked.get("location", "")):
        problems.append(f"location = {outputs.get('location')!r}: must be an Azure region name")
    for key in _NAMED_OUTPUTS:
        if outputs.get(key) is None and key.startswith("foundry"):
            continue
        broken = RULES[key].violation(checked.get(key, ""))
        if broken:
            problems.append(f"{key} = {outputs.get(key)!r}: {broken}")
    if problems:
        raise CleanupError(
            "the stack outputs break Azure's naming rules; nothing was sent:\n  - "
            + "\n  - ".join(problems)
        )
    return checked


@dataclass(frozen=True)
class Clients:
    """What a purge is sent through: azure-ai-ml for the ML workspaces, ArmClient for the
    rest."""

    workspaces: WorkspaceOperations
    arm: ArmClient

    @classmethod
    def signed_in(
        cls,
        credential: TokenCredential,
        subscription_id: str,
        resource_group: str,
        *,
        session: requests.Session | None = None,
        poll_seconds: float = 5.0,
    ) -> Clients:
        """Both clients on one HTTP session and with ArmClient's limits
        (`ml_client.on_session`), a poll every `poll_seconds`."""
        session = session or requests.Session()
        arm = ArmClient(
            session, lambda: credential.get_token(ARM_SCOPE).token, poll_seconds=poll_seconds
        )
        ml = ml_client.on_session(
            credential, arm, session, subscription_id, resource_group, poll_seconds=poll_seconds
        )
        return cls(ml.workspaces, arm)

    def send(self, step: HttpStep) -> str:
        """Carry out `step`: "done" or "already gone"; ArmError when Azure refuses."""
        if isinstance(step, WorkspacePurge):
            return self._purge(step)
        return self.arm.run(step)

    def _purge(self, step: WorkspacePurge) -> str:
        """Delete it permanently; the polls get what the look-up and the DELETE left of
        ArmClient's deadline for an operation."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
        )

        deadline = self.arm.timeout_seconds
        ends = time.monotonic() + deadline
        try:
            poller = self.workspaces.begin_delete(
                step.name, permanently_delete=True, delete_dependent_resources=False
            )
            poller.wait(timeout=max(0.0, ends - time.monotonic()))
        except ResourceNotFoundError:
            return "already gone"
        except ClientAuthenticationError:
            raise  # not signed in: `phi` names the fix
        except HttpResponseError as error:
            found = error.error
            reason = f"{found.code}: {found.message}" if found else error.reason
            raise ArmError(f"{step.description}: HTTP {error.status_code}: {reason}") from None
        if not poller.done():
            raise ArmError(f"{step.description}: not finished after {deadline:g} s")
        return "done"


def cleanup(
    outputs: Mapping[str, Any],
    *,
    purge: bool,
    destroy: Callable[[], None],
    clients: Clients | None,
    log: Callable[[str], None] = print,
) -> None:
    """Purge (if asked) around `destroy`, in the only order that works."""
    if not purge:
        log("pulumi destroy ...")
        destroy()
        return
    steps = plan(outputs)
    if clients is None:
        raise CleanupError("purging needs Azure credentials")
    try:
        for step in (s for s in steps if s.when == "before"):
            log(f"{step.description}: {clients.send(step)}")
    except ArmError as error:
        raise CleanupError(f"{error}\nNothing was destroyed.") from error
    log("pulumi destroy ...")
    destroy()
    for step in (s for s in steps if s.when == "after"):
        try:
            log(f"{step.description}: {clients.send(step)}")
        except ArmError as error:
            raise CleanupError(
                f"{error}\nEverything else is gone. If the vault is purge-protected "
                "(keyVaultPurgeProtection), its name stays taken until its retention ends: "
                "set keyVaultName to a new name before the next `pulumi up`."
            ) from error


def ordered_lines(steps: list[HttpStep], destroy_command: list[str]) -> list[str]:
    """The plan as a reader sees it: requests and the destroy command, in order."""

    def lines(when: str) -> list[str]:
        return [
            f"{method} {ARM_ENDPOINT}{path}    # {why}"
            for step in steps
            if step.when == when
            for method, path, why in step.sent()
        ]

    return [*lines("before"), " ".join(destroy_command), *lines("after")]


def _stack_outputs(stack: str) -> dict[str, Any]:
    result = subprocess.run(
        ["pulumi", "stack", "output", "--json", "--stack", stack],
        check=True,
        capture_output=True,
        text=True,
    )
    outputs: dict[str, Any] = json.loads(result.stdout)
    return outputs


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True)


def run(stack: str, outputs_file: Path | None, *, purge: bool, dry_run: bool, yes: bool) -> int:
    """`phi cleanup`: plan, confirm, then purge and destroy; the exit code."""
    try:
        outputs = json.loads(outputs_file.read_text()) if outputs_file else _stack_outputs(stack)
        steps = plan(outputs) if purge else []
    except (CleanupError, OSError, json.JSONDecodeError, subprocess.CalledProcessError) as error:
        print(f"phi: error: {error}", file=sys.stderr)
        return 2
    destroy_command = ["pulumi", "destroy", "--stack", stack, "--yes", "--skip-preview"]
    if dry_run:
        print("\n".join(ordered_lines(steps, destroy_command)))
        return 0
    if not yes and input(f"Destroy stack {stack} and everything in it? [y/N] ") != "y":
        print("nothing done")
        return 1

    clients = None
    if steps:
        from azure.identity import DefaultAzureCredential

        clients = Clients.signed_in(
            DefaultAzureCredential(), outputs["subscriptionId"], outputs["resourceGroupName"]
        )
    try:
        cleanup(outputs, purge=purge, destroy=lambda: _run(destroy_command), clients=clients)
    except (CleanupError, subprocess.CalledProcessError) as error:
        print(f"phi: error: {error}", file=sys.stderr)
        return 1
    return 0
