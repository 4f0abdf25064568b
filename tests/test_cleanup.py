"""`python -m infra.cleanup`: purge what Azure soft-deletes, around `pulumi destroy`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from infra.arm import ArmClient
from infra.cleanup import CleanupError, cleanup, main, plan
from tests.arm_server import arm_server

OUTPUTS = {
    "subscriptionId": "00000000-0000-0000-0000-0000000000a1",
    "resourceGroupName": "rg-phi-dev",
    "location": "eastus2",
    "workspaceName": "mlw-phi-dev",
    "logAnalyticsName": "log-phi-dev",
    "keyVaultName": "kv-phidev-abc123",
}
WORKSPACE = "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg-phi-dev/providers/Microsoft.MachineLearningServices/workspaces/mlw-phi-dev"
LOGS = "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg-phi-dev/providers/Microsoft.OperationalInsights/workspaces/log-phi-dev"
VAULT_PURGE = "/subscriptions/00000000-0000-0000-0000-0000000000a1/providers/Microsoft.KeyVault/locations/eastus2/deletedVaults/kv-phidev-abc123/purge"


def client(endpoint: str) -> ArmClient:
    return ArmClient(requests.Session(), lambda: "test-token", endpoint=endpoint, poll_seconds=0.01)


def test_purge_runs_in_the_only_order_that_works() -> None:
    events: list[str] = []
    with arm_server() as (endpoint, state):
        cleanup(
            OUTPUTS,
            purge=True,
            destroy=lambda: events.append(f"destroy after {len(state.resource_calls())} calls"),
            arm=client(endpoint),
            log=events.append,
        )
        calls = state.resource_calls()
        polls = [c for c in state.calls if c.path.startswith("/operations/")]
        tokens = {c.authorization for c in state.calls}
    assert calls == [
        ("DELETE", f"{WORKSPACE}?api-version=2024-10-01&forceToPurge=true"),
        ("DELETE", f"{LOGS}?api-version=2023-09-01&force=true"),
        ("POST", f"{VAULT_PURGE}?api-version=2023-07-01"),
    ]
    # The two deletes finished (their operations were polled to the end) before destroy.
    assert "destroy after 2 calls" in events
    assert len(polls) == 6
    assert tokens == {"Bearer test-token"}


def test_resources_already_gone_are_not_an_error() -> None:
    with arm_server() as (endpoint, state):
        state.missing.add(WORKSPACE)
        log: list[str] = []
        cleanup(OUTPUTS, purge=True, destroy=lambda: None, arm=client(endpoint), log=log.append)
    assert "delete ML workspace mlw-phi-dev permanently: already gone" in log


def test_a_vault_that_cannot_be_purged_says_what_to_do() -> None:
    destroyed = []
    with arm_server() as (endpoint, state):
        state.failing[VAULT_PURGE] = (409, "Conflict")
        with pytest.raises(CleanupError) as caught:
            cleanup(
                OUTPUTS, purge=True, destroy=lambda: destroyed.append(True), arm=client(endpoint)
            )
    assert destroyed == [True]
    message = str(caught.value)
    assert "HTTP 409" in message
    assert "set keyVaultName to a new name" in message


def test_a_failed_purge_before_destroy_stops_before_destroying() -> None:
    destroyed = []
    with arm_server() as (endpoint, state):
        state.failing[WORKSPACE] = (403, "AuthorizationFailed")
        with pytest.raises(CleanupError, match="AuthorizationFailed"):
            cleanup(
                OUTPUTS, purge=True, destroy=lambda: destroyed.append(True), arm=client(endpoint)
            )
    assert destroyed == []


def test_without_purge_only_destroy_runs() -> None:
    destroyed = []
    cleanup(
        OUTPUTS, purge=False, destroy=lambda: destroyed.append(True), arm=None, log=lambda _: None
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
    assert main(["--stack", "dev", "--outputs", str(outputs), "--purge", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"DELETE https://management.azure.com{WORKSPACE}?api-version=2024-10-01&forceToPurge=true"
        "    # delete ML workspace mlw-phi-dev permanently",
        f"DELETE https://management.azure.com{LOGS}?api-version=2023-09-01&force=true"
        "    # delete Log Analytics workspace log-phi-dev permanently",
        "pulumi destroy --stack dev --yes --skip-preview",
        f"POST https://management.azure.com{VAULT_PURGE}?api-version=2023-07-01"
        "    # purge soft-deleted key vault kv-phidev-abc123",
    ]


def test_unreadable_outputs_are_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--stack", "dev", "--outputs", str(tmp_path / "nope.json"), "--dry-run"]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_a_foundry_stack_purges_the_project_then_the_hub() -> None:
    outputs = {**OUTPUTS, "foundryHubName": "hub-phi-dev", "foundryProjectName": "proj-phi-dev"}
    base = WORKSPACE.removesuffix("mlw-phi-dev")
    with arm_server() as (endpoint, state):
        cleanup(outputs, purge=True, destroy=lambda: None, arm=client(endpoint), log=lambda _: None)
        calls = state.resource_calls()
    assert calls[:3] == [
        ("DELETE", f"{base}proj-phi-dev?api-version=2024-10-01&forceToPurge=true"),
        ("DELETE", f"{base}hub-phi-dev?api-version=2024-10-01&forceToPurge=true"),
        ("DELETE", f"{WORKSPACE}?api-version=2024-10-01&forceToPurge=true"),
    ]
    assert len(calls) == 5


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
    with arm_server() as (endpoint, state):
        with pytest.raises(CleanupError) as caught:
            cleanup({**OUTPUTS, **changed}, purge=True, destroy=lambda: None, arm=client(endpoint))
        assert state.calls == []
    assert named in str(caught.value)
    assert "nothing was sent" in str(caught.value)


def test_the_dry_run_prints_exactly_the_paths_that_are_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = {**OUTPUTS, "foundryHubName": "hub-phi-dev", "foundryProjectName": "proj-phi-dev"}
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    assert (
        main(
            ["--stack", "dev", "--outputs", str(tmp_path / "outputs.json"), "--purge", "--dry-run"]
        )
        == 0
    )
    printed = [
        (line.split()[0], line.split()[1].removeprefix("https://management.azure.com"))
        for line in capsys.readouterr().out.splitlines()
        if line.startswith(("DELETE", "POST"))
    ]
    with arm_server() as (endpoint, state):
        cleanup(outputs, purge=True, destroy=lambda: None, arm=client(endpoint), log=lambda _: None)
        sent = state.resource_calls()
    assert printed == sent
