"""Tear an environment down so that the same stack can be brought up again at once.

`pulumi destroy` alone leaves names taken: Azure keeps the ML workspace (14 days), the
Foundry project and hub when the stack has them (ML workspaces too), the key vault (its
retention period) and the Log Analytics workspace soft-deleted, and the next `pulumi up`
with the same, stack-stable names fails. With `--purge` this command:

1. deletes the Foundry project, then its hub, then the ML workspace, each with
   `forceToPurge=true` (no soft-delete),
2. deletes the Log Analytics workspace with `force=true` (no soft-delete),
3. runs `pulumi destroy` for everything else,
4. purges the soft-deleted key vault (impossible when purge protection is on; then the
   name stays taken until its retention ends and the command says so).

Usage:
    python -m infra.cleanup --stack dev --purge --dry-run   # print the plan, send nothing
    python -m infra.cleanup --stack dev --purge --yes       # do it
    python -m infra.cleanup --outputs outputs.json --purge  # outputs saved earlier
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from infra.arm import ARM_ENDPOINT, ARM_SCOPE, ArmClient, ArmError, segment
from infra.azure_facts import API_VERSIONS
from infra.naming import RULES

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
    ml = API_VERSIONS["Microsoft.MachineLearningServices"]
    logs = API_VERSIONS["Microsoft.OperationalInsights"]
    vault = API_VERSIONS["Microsoft.KeyVault"]

    def purge_workspace(what: str, name: str) -> HttpStep:
        return HttpStep(
            f"delete {what} {name} permanently",
            "DELETE",
            f"{base}/Microsoft.MachineLearningServices/workspaces/{segment(name)}"
            f"?api-version={ml}&forceToPurge=true",
            "before",
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


# The outputs a purge URL names, each checked against its naming rule (infra.naming.RULES).
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


def cleanup(
    outputs: Mapping[str, Any],
    *,
    purge: bool,
    destroy: Callable[[], None],
    arm: ArmClient | None,
    log: Callable[[str], None] = print,
) -> None:
    """Purge (if asked) around `destroy`, in the only order that works."""
    if not purge:
        log("pulumi destroy ...")
        destroy()
        return
    steps = plan(outputs)
    if arm is None:
        raise CleanupError("purging needs Azure credentials")
    try:
        for step in (s for s in steps if s.when == "before"):
            log(f"{step.description}: {arm.run(step)}")
    except ArmError as error:
        raise CleanupError(f"{error}\nNothing was destroyed.") from error
    log("pulumi destroy ...")
    destroy()
    for step in (s for s in steps if s.when == "after"):
        try:
            log(f"{step.description}: {arm.run(step)}")
        except ArmError as error:
            raise CleanupError(
                f"{error}\nEverything else is gone. If the vault is purge-protected "
                "(keyVaultPurgeProtection), its name stays taken until its retention ends: "
                "set keyVaultName to a new name before the next `pulumi up`."
            ) from error


def ordered_lines(steps: list[HttpStep], destroy_command: list[str]) -> list[str]:
    """The plan as a reader sees it: requests and the destroy command, in order."""

    def line(step: HttpStep) -> str:
        return f"{step.method} {ARM_ENDPOINT}{step.path}    # {step.description}"

    return [
        *(line(s) for s in steps if s.when == "before"),
        " ".join(destroy_command),
        *(line(s) for s in steps if s.when == "after"),
    ]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.cleanup", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--stack", required=True, help="Pulumi stack to destroy, e.g. dev")
    parser.add_argument("--outputs", type=Path, help="read the stack outputs from this JSON file")
    parser.add_argument("--purge", action="store_true", help="also purge what Azure soft-deletes")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, send nothing")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    args = parser.parse_args(argv)

    try:
        outputs = (
            json.loads(args.outputs.read_text()) if args.outputs else _stack_outputs(args.stack)
        )
        steps = plan(outputs) if args.purge else []
    except (CleanupError, OSError, json.JSONDecodeError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    destroy_command = ["pulumi", "destroy", "--stack", args.stack, "--yes", "--skip-preview"]
    if args.dry_run:
        print("\n".join(ordered_lines(steps, destroy_command)))
        return 0
    if not args.yes and input(f"Destroy stack {args.stack} and everything in it? [y/N] ") != "y":
        print("nothing done")
        return 1

    arm = None
    if steps:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
        arm = ArmClient(requests.Session(), lambda: credential.get_token(ARM_SCOPE).token)
    try:
        cleanup(
            outputs,
            purge=args.purge,
            destroy=lambda: _run(destroy_command),
            arm=arm,
        )
    except (CleanupError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
