"""`phi cleanup`: purge what Azure soft-deletes, around `pulumi destroy`.

Azure is the ARM stand-in (tests/arm_server.py): both clients of a purge, azure-ai-ml's
MLClient and ArmClient, send to `https://management.azure.com` on a session that delivers
there to the stand-in and refuses every other address; the sign-in is a fake credential.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from finetune_phi.cli.main import main as phi
from finetune_phi.cloud.cleanup import CleanupError, Clients, cleanup, plan
from tests.arm_server import ArmState, arm_server, arm_session
from tests.support import ROOT

OUTPUTS = {
    "subscriptionId": "00000000-0000-0000-0000-0000000000a1",
    "resourceGroupName": "rg-phi-dev",
    "location": "eastus2",
    "workspaceName": "mlw-phi-dev",
    "logAnalyticsName": "log-phi-dev",
    "keyVaultName": "kv-phidev-abc123",
}
WORKSPACES = "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg-phi-dev/providers/Microsoft.MachineLearningServices/workspaces"
WORKSPACE = f"{WORKSPACES}/mlw-phi-dev"
ML = "api-version=2024-10-01-preview"  # what azure-ai-ml 1.35 sends for workspaces
LOGS = "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg-phi-dev/providers/Microsoft.OperationalInsights/workspaces/log-phi-dev"
VAULT_PURGE = "/subscriptions/00000000-0000-0000-0000-0000000000a1/providers/Microsoft.KeyVault/locations/eastus2/deletedVaults/kv-phidev-abc123/purge"


class FakeCredential:
    """The tests' sign-in: a TokenCredential that hands out one fixed token."""

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken("test-token", int(time.time()) + 3600)


def workspace_document(name: str, kind: str) -> dict[str, object]:
    """A workspace as ARM's GET answers it, with what azure-ai-ml reads before deleting."""
    properties = {
        "friendlyName": name,
        "provisioningState": "Succeeded",
        "mlFlowTrackingUri": f"azureml://eastus2.api.azureml.ms/mlflow/v1.0{WORKSPACES}/{name}",
    }
    if kind == "Project":
        properties["hubResourceId"] = f"{WORKSPACES}/hub-phi-dev"
    return {
        "id": f"{WORKSPACES}/{name}",
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces",
        "location": "eastus2",
        "kind": kind,
        "properties": properties,
    }


@contextmanager
def azure(outputs: Mapping[str, str] = OUTPUTS) -> Iterator[tuple[Clients, ArmState]]:
    """The stand-in, holding the stack's workspaces, and the clients a purge goes through,
    signed in with a fake token; when the block ends, nothing has left the stand-in."""
    with arm_server() as (endpoint, state):
        for key, kind in (
            ("workspaceName", "Default"),
            ("foundryHubName", "Hub"),
            ("foundryProjectName", "Project"),
        ):
            if key in outputs:
                name = outputs[key]
                state.documents[f"{WORKSPACES}/{name}"] = workspace_document(name, kind)
        session = arm_session(endpoint, state)
        yield (
            Clients.signed_in(
                FakeCredential(),
                OUTPUTS["subscriptionId"],
                OUTPUTS["resourceGroupName"],
                session=session,
                poll_seconds=0.01,
            ),
            state,
        )
        assert state.refused == []


def test_purge_runs_in_the_only_order_that_works() -> None:
    events: list[str] = []
    with azure() as (clients, state):
        cleanup(
            OUTPUTS,
            purge=True,
            destroy=lambda: events.append(f"destroy after {len(state.resource_calls())} calls"),
            clients=clients,
            log=events.append,
        )
        calls = state.resource_calls()
        polls = [c for c in state.calls if c.path.startswith("/operations/")]
        tokens = {c.authorization for c in state.calls}
    assert calls == [
        ("GET", f"{WORKSPACE}?{ML}"),  # azure-ai-ml reads the workspace first
        ("DELETE", f"{WORKSPACE}?{ML}&forceToPurge=true"),
        ("DELETE", f"{LOGS}?api-version=2023-09-01&force=true"),
        ("POST", f"{VAULT_PURGE}?api-version=2023-07-01"),
    ]
    # The two deletes finished (their operations were polled to the end) before destroy.
    assert "destroy after 3 calls" in events
    assert len(polls) == 6
    assert tokens == {"Bearer test-token"}


def test_resources_already_gone_are_not_an_error() -> None:
    with azure() as (clients, state):
        state.missing.update({WORKSPACE, LOGS})
        log: list[str] = []
        cleanup(OUTPUTS, purge=True, destroy=lambda: None, clients=clients, log=log.append)
    assert "delete ML workspace mlw-phi-dev permanently: already gone" in log
    assert "delete Log Analytics workspace log-phi-dev permanently: already gone" in log


def test_a_vault_that_cannot_be_purged_says_what_to_do() -> None:
    destroyed = []
    with azure() as (clients, state):
        state.failing[VAULT_PURGE] = (409, "Conflict")
        with pytest.raises(CleanupError) as caught:
            cleanup(OUTPUTS, purge=True, destroy=lambda: destroyed.append(True), clients=clients)
    assert destroyed == [True]
    message = str(caught.value)
    assert "HTTP 409" in message
    assert "set keyVaultName to a new name" in message


def test_a_failed_purge_before_destroy_stops_before_destroying() -> None:
    destroyed = []
    with azure() as (clients, state):
        state.failing[WORKSPACE] = (403, "AuthorizationFailed")
        with pytest.raises(CleanupError) as caught:
            cleanup(OUTPUTS, purge=True, destroy=lambda: destroyed.append(True), clients=clients)
    assert destroyed == []
    assert str(caught.value) == (
        "delete ML workspace mlw-phi-dev permanently: HTTP 403: AuthorizationFailed: "
        "AuthorizationFailed for test\nNothing was destroyed."
    )


def test_a_workspace_delete_that_does_not_finish_stops_at_its_deadline() -> None:
    destroyed = []
    with azure() as (clients, state):
        state.polls_before_done = 40  # about 0.4 s of polls, against a deadline of 0.1 s
        clients.arm.timeout_seconds = 0.1
        with pytest.raises(CleanupError) as caught:
            cleanup(OUTPUTS, purge=True, destroy=lambda: destroyed.append(True), clients=clients)
        # The SDK's poller (a daemon thread) polls on: let it end here, not at a later stand-in.
        give_up = time.monotonic() + 30
        while len(state.calls) < 2 + 41 and time.monotonic() < give_up:
            time.sleep(0.01)
    assert destroyed == []
    assert str(caught.value) == (
        "delete ML workspace mlw-phi-dev permanently: not finished after 0.1 s\n"
        "Nothing was destroyed."
    )


def test_a_redirect_is_not_followed_and_the_token_stays_home() -> None:
    with azure() as (clients, state):
        state.redirects[WORKSPACE] = "https://elsewhere.example/collect"
        with pytest.raises(CleanupError, match="HTTP 302"):
            cleanup(OUTPUTS, purge=True, destroy=lambda: None, clients=clients)
        assert state.refused == []  # not even tried


def test_without_purge_only_destroy_runs() -> None:
    destroyed = []
    cleanup(
        OUTPUTS,
        purge=False,
        destroy=lambda: destroyed.append(True),
        clients=None,
        log=lambda _: None,
    )
    assert destroyed == [True]


def test_plan_needs_a_finetune_phi_stack() -> None:
    with pytest.raises(CleanupError, match="lack keyVaultName"):
        plan({k: v for k, v in OUTPUTS.items() if k != "keyVaultName"})


def test_dry_run_prints_the_plan_without_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(OUTPUTS))
    assert (
        phi(["cleanup", "--stack", "dev", "--outputs", str(outputs), "--purge", "--dry-run"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"GET https://management.azure.com{WORKSPACE}?{ML}"
        "    # azure-ai-ml reads mlw-phi-dev first",
        f"DELETE https://management.azure.com{WORKSPACE}?{ML}&forceToPurge=true"
        "    # delete ML workspace mlw-phi-dev permanently",
        f"DELETE https://management.azure.com{LOGS}?api-version=2023-09-01&force=true"
        "    # delete Log Analytics workspace log-phi-dev permanently",
        "pulumi destroy --stack dev --yes --skip-preview",
        f"POST https://management.azure.com{VAULT_PURGE}?api-version=2023-07-01"
        "    # purge soft-deleted key vault kv-phidev-abc123",
    ]


def test_only_a_confirmed_purge_signs_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(OUTPUTS))
    command = ["cleanup", "--stack", "dev", "--outputs", str(outputs), "--purge"]
    destroyed: list[list[str]] = []
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", FakeCredential)
    monkeypatch.setattr("finetune_phi.cloud.cleanup._run", destroyed.append)
    with azure() as (clients, state):
        signed_in: list[tuple[object, ...]] = []

        def sign_in(*args: object) -> Clients:
            signed_in.append(args)
            return clients

        monkeypatch.setattr(Clients, "signed_in", sign_in)
        assert phi([*command, "--dry-run"]) == 0
        assert signed_in == []
        assert state.calls == []
        assert phi([*command, "--yes"]) == 0
        sent = state.resource_calls()
    [(credential, subscription, group)] = signed_in
    assert isinstance(credential, FakeCredential)
    assert (subscription, group) == (OUTPUTS["subscriptionId"], OUTPUTS["resourceGroupName"])
    assert destroyed == [["pulumi", "destroy", "--stack", "dev", "--yes", "--skip-preview"]]
    assert [method for method, _ in sent] == ["GET", "DELETE", "DELETE", "POST"]


def test_unreadable_outputs_are_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        phi(["cleanup", "--stack", "dev", "--outputs", str(tmp_path / "nope.json"), "--dry-run"])
        == 2
    )
    assert "nope.json" in capsys.readouterr().err


def test_a_foundry_stack_purges_the_project_then_the_hub() -> None:
    outputs = {**OUTPUTS, "foundryHubName": "hub-phi-dev", "foundryProjectName": "proj-phi-dev"}
    with azure(outputs) as (clients, state):
        cleanup(outputs, purge=True, destroy=lambda: None, clients=clients, log=lambda _: None)
        deletes = [call for call in state.resource_calls() if call[0] != "GET"]
    assert deletes[:3] == [
        ("DELETE", f"{WORKSPACES}/proj-phi-dev?{ML}&forceToPurge=true"),
        ("DELETE", f"{WORKSPACES}/hub-phi-dev?{ML}&forceToPurge=true"),
        ("DELETE", f"{WORKSPACE}?{ML}&forceToPurge=true"),
    ]
    assert len(deletes) == 5


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"workspaceName": "../../.."}, "workspaceName = '../../..'"),
        ({"subscriptionId": "sub/../x"}, "subscriptionId = 'sub/../x': must be a GUID"),
        ({"keyVaultName": "kv?x=1"}, "keyVaultName = 'kv?x=1'"),
        ({"location": "east us"}, "location = 'east us'"),
        ({"foundryHubName": "hub/../../.."}, "foundryHubName = 'hub/../../..'"),
    ],
)
def test_outputs_that_break_azures_naming_rules_send_nothing(
    changed: dict[str, str], named: str
) -> None:
    with azure() as (clients, state):
        with pytest.raises(CleanupError) as caught:
            cleanup({**OUTPUTS, **changed}, purge=True, destroy=lambda: None, clients=clients)
        assert state.calls == []
    assert named in str(caught.value)
    assert "nothing was sent" in str(caught.value)


def test_the_dry_run_prints_exactly_the_paths_that_are_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = {**OUTPUTS, "foundryHubName": "hub-phi-dev", "foundryProjectName": "proj-phi-dev"}
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    assert (
        phi(
            [
                "cleanup",
                "--stack",
                "dev",
                "--outputs",
                str(tmp_path / "outputs.json"),
                "--purge",
                "--dry-run",
            ]
        )
        == 0
    )
    printed = [
        (line.split()[0], line.split()[1].removeprefix("https://management.azure.com"))
        for line in capsys.readouterr().out.splitlines()
        if line.startswith(("GET", "DELETE", "POST"))
    ]
    with azure(outputs) as (clients, state):
        cleanup(outputs, purge=True, destroy=lambda: None, clients=clients, log=lambda _: None)
        sent = state.resource_calls()
    assert printed == sent


def test_the_old_spelling_still_works_and_names_the_new_one(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(OUTPUTS))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.cleanup",
            "--stack",
            "dev",
            "--dry-run",
            "--outputs",
            str(outputs),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "is now `phi cleanup`" in result.stderr
    assert result.stdout.strip() == "pulumi destroy --stack dev --yes --skip-preview"
