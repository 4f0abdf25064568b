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

It never stops half-way for want of something it could have checked: before the first
request it has the Pulumi CLI on PATH and a Pulumi project around the current folder, an
Azure token for Resource Manager (with `--purge`), and a confirmation: `y` or `yes` in any
case typed on a terminal, or `--yes`. Each step prints what it did (`done`, or `already
gone`), so a rerun after a failure finishes the job: what is gone is skipped, and
`pulumi destroy` of a stack already destroyed changes nothing. The outputs a purge needs are
kept in `.phi/cleanup-<stack>.json` (or under $PHI_STATE_DIR) until it has finished, for a
rerun after `pulumi destroy` has emptied the stack's own. `--dry-run` needs neither the CLI
nor a sign-in when the outputs come from `--outputs FILE`.

Usage:
    phi cleanup --stack dev --purge --dry-run                      # print the plan, send nothing
    phi cleanup --stack dev --purge --yes                          # do it
    phi cleanup --stack dev --outputs outputs.json --purge         # outputs saved earlier
    pulumi stack output --json --stack dev > outputs.json          # ... saved so
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from finetune_phi.cloud import ml_client
from finetune_phi.cloud.credentials import SIGN_IN
from finetune_phi.core import stack_outputs
from finetune_phi.core.arm import (
    ARM_ENDPOINT,
    ARM_SCOPE,
    GUID,
    ArmClient,
    ArmError,
    segment,
)
from finetune_phi.core.azure_facts import API_VERSIONS
from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.core.naming import RULES
from finetune_phi.core.state import state_dir

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


class CleanupError(ArmError, PhiError):
    """A step failed (exit 1); the message, one line, says which, how far it got and what to
    do."""


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


def checked_outputs(outputs: Mapping[str, Any]) -> dict[str, str]:
    """The outputs a purge URL is built from, each checked against Azure's naming rule, so
    no value can change which resource a request names."""
    problems = []
    checked = {key: str(value) for key, value in outputs.items() if isinstance(value, str)}
    if not GUID.fullmatch(checked.get("subscriptionId", "")):
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
            "the stack outputs break Azure's naming rules, so nothing was sent: "
            + "; ".join(problems)
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
            AzureError,
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
        except AzureError as error:  # no answer at all: the network, a proxy, a timeout
            raise ArmError(
                f"{step.description}: cannot reach Azure ({type(error).__name__}): "
                "check the network"
            ) from None
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
    destroy_description: str = "pulumi destroy",
) -> None:
    """Purge (if asked) around `destroy`, in the only order that works, one line a step.
    A failure is a CleanupError that says how far it got; steps already done report
    "already gone" when it is run again."""
    if not purge:
        _destroy(destroy, destroy_description, log, done_before=0)
        return
    steps = plan(outputs)
    if clients is None:
        raise CleanupError("purging needs Azure credentials")
    before = [s for s in steps if s.when == "before"]
    for count, step in enumerate(before):
        try:
            log(f"{step.description}: {clients.send(step)}")
        except (ArmError, requests.RequestException) as error:
            done = f" ({count} of its {len(before)} purges are done)" if count else ""
            raise CleanupError(
                f"{_failure(step, error)}; nothing was destroyed{done}: "
                f"run the same command again once that is fixed{_RERUN}"
            ) from error
    _destroy(destroy, destroy_description, log, done_before=len(before))
    for step in (s for s in steps if s.when == "after"):
        try:
            log(f"{step.description}: {clients.send(step)}")
        except (ArmError, requests.RequestException) as error:
            raise CleanupError(
                f"{_failure(step, error)}; everything else is gone. If the vault is "
                "purge-protected (keyVaultPurgeProtection), its name stays taken until its "
                "retention ends: set keyVaultName to a new name before the next `pulumi up`; "
                f"otherwise run the same command again to purge it{_RERUN}"
            ) from error


_RERUN = ' (what is done already reports "already gone")'


def _failure(step: HttpStep, error: Exception) -> str:
    """What went wrong with `step`, in one line."""
    if isinstance(error, requests.RequestException):
        return f"{step.description}: cannot reach Azure ({type(error).__name__}): check the network"
    first = (str(error).strip().splitlines() or ["failed"])[0]
    return first if first.startswith(step.description) else f"{step.description}: {first}"


def _destroy(
    destroy: Callable[[], None], description: str, log: Callable[[str], None], done_before: int
) -> None:
    log(f"{description}: running")
    try:
        destroy()
    except subprocess.CalledProcessError as error:
        done = f" (the {done_before} purges before it are done)" if done_before else ""
        raise CleanupError(
            f"{description} failed with exit code {error.returncode} (Pulumi's output is "
            f"above){done}: run the same command again once that is fixed{_RERUN}"
        ) from error
    log(f"{description}: done")


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


INSTALL_PULUMI = "https://www.pulumi.com/docs/iac/download-install/"
CONFIRMATIONS = ("y", "yes")
"""What confirms at the prompt, in any case, blanks around it aside; anything else is no."""


def no_pulumi_cli(stack: str) -> UsageError:
    """No Pulumi CLI: how to install it, and how to get a plan without it."""
    return UsageError(
        "the Pulumi CLI is not on PATH, and `phi cleanup` needs it to read the stack outputs "
        f"and to run `pulumi destroy`: install it ({INSTALL_PULUMI}); for a plan without it, "
        f"save the outputs where it is installed, `pulumi stack output --json --stack {stack} "
        f"> outputs.json`, then run `phi cleanup --stack {stack} --outputs outputs.json "
        "--purge --dry-run`; nothing was sent"
    )


def kept_outputs_file(stack: str) -> Path:
    """Where a cleanup keeps the outputs its purges need until it has finished."""
    return state_dir() / f"cleanup-{re.sub(r'[^A-Za-z0-9._-]', '_', stack)}.json"


def _read_outputs(stack: str, outputs_file: Path | None) -> tuple[dict[str, Any], bool]:
    """The stack outputs, and whether they came from the stack itself. A stack that
    `pulumi destroy` has emptied falls back on the outputs an unfinished cleanup kept."""
    if outputs_file is not None:
        return dict(stack_outputs.from_file(outputs_file).values), False
    values = dict(stack_outputs.from_stack(stack).values)
    kept = kept_outputs_file(stack)
    if not any(values.get(key) for key in _REQUIRED_OUTPUTS) and kept.is_file():
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads(kept.read_text())
            if isinstance(saved, dict):
                print(
                    f"stack {stack} has no outputs left: using those the last cleanup kept, {kept}"
                )
                return saved, False
    return values, True


def _keep(stack: str, outputs: Mapping[str, Any]) -> Path:
    """Keep what the purges need (names only, no secret) for a rerun."""
    path = kept_outputs_file(stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    needed = (*_REQUIRED_OUTPUTS, "foundryProjectName", "foundryHubName")
    path.write_text(json.dumps({key: outputs[key] for key in needed if outputs.get(key)}))
    return path


def _forget(stack: str) -> None:
    path = kept_outputs_file(stack)
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only when nothing else is kept there


def pulumi_project(folder: Path) -> Path | None:
    """The Pulumi project file `pulumi` finds from `folder` (it looks upwards), or None."""
    for candidate in (folder, *folder.parents):
        for name in ("Pulumi.yaml", "Pulumi.yml"):
            if (candidate / name).is_file():
                return candidate / name
    return None


def arm_credential() -> TokenCredential:
    """DefaultAzureCredential, once it has handed out a Resource Manager token; UsageError
    (`SIGN_IN`) when there is nothing to sign in with."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    try:
        credential.get_token(ARM_SCOPE)
    except ClientAuthenticationError:
        raise UsageError(SIGN_IN) from None
    return credential


def confirmed(question: str) -> bool:
    """The answer on the terminal; end of input is no. Ctrl-C is left to `phi`."""
    try:
        answer = input(question)
    except EOFError:
        print()
        return False
    except KeyboardInterrupt:
        print()  # phi's line goes below the prompt, not after it
        raise
    return answer.strip().lower() in CONFIRMATIONS


def _run(command: list[str]) -> None:
    """Run `command` (`pulumi destroy`); CalledProcessError when it fails. On Ctrl-C, Pulumi,
    which got the same Ctrl-C from the terminal, is left to stop on its own and waited
    for, never killed: a killed destroy leaves the stack's state with pending operations."""
    process = subprocess.Popen(command)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.wait()
        raise
    if code != 0:
        raise subprocess.CalledProcessError(code, command)


def run(stack: str, outputs_file: Path | None, *, purge: bool, dry_run: bool, yes: bool) -> int:
    """`phi cleanup`: plan, check every prerequisite, confirm, then purge and destroy; the
    exit code. UsageError (2) before anything is sent; CleanupError (1) once it has."""
    has_cli = shutil.which("pulumi") is not None
    if not has_cli and (outputs_file is None or not dry_run):
        raise no_pulumi_cli(stack)
    outputs: dict[str, Any] = {}
    from_stack = False
    if outputs_file is not None or purge:
        outputs, from_stack = _read_outputs(stack, outputs_file)
    if purge and from_stack and not any(outputs.get(key) for key in _REQUIRED_OUTPUTS):
        raise UsageError(
            f"stack {stack} has no outputs: destroyed already? Its purges need the outputs it "
            f"had: pass the file they were saved to, `--outputs FILE`; nothing was sent"
        )
    try:
        steps = plan(outputs) if purge else []
    except CleanupError as error:
        raise UsageError(str(error)) from None
    destroy_command = ["pulumi", "destroy", "--stack", stack, "--yes", "--skip-preview"]
    if dry_run:
        print("\n".join(ordered_lines(steps, destroy_command)))
        return 0

    if pulumi_project(Path.cwd()) is None:
        raise UsageError(
            f"no Pulumi.yaml in {Path.cwd()} or above it, and `pulumi destroy` runs in the "
            "Pulumi project: run `phi cleanup` in the checkout; nothing was sent"
        )
    if not yes and not sys.stdin.isatty():
        raise UsageError("no terminal to confirm on; pass --yes; nothing was sent")
    clients = None
    if steps:
        clients = Clients.signed_in(
            arm_credential(), outputs["subscriptionId"], outputs["resourceGroupName"]
        )
    also = ", and purge what Azure keeps of it" if purge else ""
    if not yes and not confirmed(f"Destroy stack {stack} and everything in it{also}? [y/N] "):
        print("nothing done")
        return 1

    if steps and from_stack:
        _keep(stack, outputs)
    cleanup(
        outputs,
        purge=purge,
        destroy=lambda: _run(destroy_command),
        clients=clients,
        destroy_description=f"pulumi destroy --stack {stack}",
    )
    if steps:
        _forget(stack)
    return 0
