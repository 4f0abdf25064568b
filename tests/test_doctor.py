"""`phi doctor`: every check against a stand-in for Azure Resource Manager that answers
with the shapes of Azure's documented responses; no credentials in one line."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from finetune_phi.cli import doctor as doctor_cli
from finetune_phi.cli.main import main
from finetune_phi.cloud.doctor import CHECKS, Clients
from finetune_phi.core.arm import ARM_ENDPOINT, ARM_SCOPE
from finetune_phi.core.azure_facts import API_VERSIONS
from finetune_phi.core.roles import BuiltInRole
from tests.arm_server import ArmState, arm_server, arm_session
from tests.support import BIN, ROOT, assert_one_sign_in_line, without_azure_sign_in

SUB = "00000000-0000-0000-0000-000000000001"
PRINCIPAL = "11111111-2222-3333-4444-555555555555"
RG = "rg-phi-dev"
OUTPUTS = {
    "subscriptionId": SUB,
    "resourceGroupName": RG,
    "location": "eastus2",
    "environment": "dev",
    "workspaceName": "mlw-phi-dev",
    "keyVaultName": "kv-phidev-abc123",
    "logAnalyticsName": "log-phi-dev",
    "storageAccountName": "stphidevabc123",
    "containerRegistryLoginServer": "crphidevabc123.azurecr.io",
    "identityPrincipalId": PRINCIPAL,
}
PROVIDERS = f"/subscriptions/{SUB}/providers"
USAGES = f"{PROVIDERS}/Microsoft.MachineLearningServices/locations/eastus2/usages"
DELETED_VAULT = f"{PROVIDERS}/Microsoft.KeyVault/locations/eastus2/deletedVaults/kv-phidev-abc123"
DELETED_LOGS = f"{PROVIDERS}/Microsoft.OperationalInsights/deletedWorkspaces"
ROLES = f"{PROVIDERS}/Microsoft.Authorization/roleAssignments"
NAMESPACES = [
    "Microsoft.MachineLearningServices",
    "Microsoft.Storage",
    "Microsoft.KeyVault",
    "Microsoft.ContainerRegistry",
    "Microsoft.Insights",
    "Microsoft.OperationalInsights",
    "Microsoft.ManagedIdentity",
]


def usage(name: str, current: int, limit: int) -> dict[str, Any]:
    """One row of Azure ML's usage list (azure-rest-api-specs example Usage/list.json)."""
    return {
        "id": f"/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/eastus2/usages/{name.replace(' ', '_')}",
        "type": "Microsoft.MachineLearningServices/vmFamily/usages",
        "currentValue": current,
        "limit": limit,
        "name": {"value": name, "localizedValue": name},
        "unit": "Count",
    }


def assignment(role: BuiltInRole, scope: str) -> dict[str, Any]:
    return {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role.value}",
            "principalId": PRINCIPAL,
            "principalType": "ServicePrincipal",
            "scope": scope,
        }
    }


def healthy(state: ArmState) -> None:
    """A subscription where everything is in order."""
    state.documents[USAGES] = {
        "value": [
            usage("Standard NCADSA100v4 Family Cluster Dedicated vCPUs", 0, 24),
            usage("Standard NCADSA100v4 Family Cluster LowPriority vCPUs", 0, -1),
        ],
        "nextLink": f"{{endpoint}}{USAGES}/page2",
    }
    state.documents[f"{USAGES}/page2"] = {
        "value": [usage("Standard NCASv3_T4 Family Cluster Dedicated vCPUs", 0, 8)]
    }
    state.documents[DELETED_LOGS] = {"value": [{"name": "log-other-dev"}]}
    group = f"/subscriptions/{SUB}/resourceGroups/{RG}"
    state.documents[ROLES] = {
        "value": [
            assignment(BuiltInRole.CONTRIBUTOR, group),
            assignment(
                BuiltInRole.STORAGE_BLOB_DATA_READER,
                f"{group}/providers/Microsoft.Storage/storageAccounts/stphidevabc123",
            ),
            assignment(
                BuiltInRole.ACR_PULL,
                f"{group}/providers/Microsoft.ContainerRegistry/registries/crphidevabc123",
            ),
        ]
    }
    for namespace in NAMESPACES:
        state.documents[f"{PROVIDERS}/{namespace}"] = {
            "namespace": namespace,
            "registrationState": "Registered",
        }


class FakeCredential:
    """Signed in, offline: a token for Resource Manager, never asked of any service."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        assert scopes == (ARM_SCOPE,)
        return AccessToken("test-token", int(time.time()) + 3600)


def doctor(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    prepare: Any,
    *args: str,
    outputs: dict[str, Any] | None = None,
) -> tuple[int, str, ArmState]:
    """`phi doctor ARGS` with both of its clients (ArmClient, azure-ai-ml) on a session that
    sends Resource Manager's address to the stand-in and refuses every other one."""
    (tmp_path / "outputs.json").write_text(json.dumps(outputs or OUTPUTS))
    with arm_server() as (endpoint, state):
        session = arm_session(endpoint, state)
        monkeypatch.setattr(
            doctor_cli,
            "signed_in",
            lambda subscription, arm: Clients.signed_in(
                FakeCredential(), subscription, session, arm
            ),
        )
        healthy(state)
        prepare(state)
        for document in state.documents.values():
            if isinstance(document, dict) and "nextLink" in document:
                document["nextLink"] = str(document["nextLink"]).replace("{endpoint}", ARM_ENDPOINT)
        code = main(["doctor", "--project-dir", str(tmp_path), *args])
    assert state.refused == []
    return code, capsys.readouterr().out, state


def rows(out: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith("| check")
    ]


def test_a_healthy_stack_passes_every_check_with_get_requests_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, state = doctor(
        tmp_path, monkeypatch, capsys, lambda s: None, "--outputs", str(tmp_path / "outputs.json")
    )
    assert code == 0, out
    table = rows(out)
    assert {row[0] for row in table} == set(CHECKS)
    assert not [row for row in table if row[1] == "FAIL"]
    quota = [row for row in table if row[0] == "quota"]
    assert any(
        "Standard NCASv3_T4 Family" in row[2] and "5 vCPUs needed, 8 free" in row[2]
        for row in quota
    )
    assert any("NCADSA100v4" in row[2] and "24 vCPUs needed, 24 free" in row[2] for row in quota)
    assert {call.method for call in state.calls} == {"GET"}
    assert {call.authorization for call in state.calls} == {"Bearer test-token"}
    roles = next(call for call in state.calls if call.path == ROLES)
    assert f"principalId%20eq%20'{PRINCIPAL}'" in roles.query
    assert f"api-version={API_VERSIONS['Microsoft.Authorization']}" in roles.query
    assert "all checks passed" in out


def test_each_failure_is_a_row_with_its_fix_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(state: ArmState) -> None:
        state.documents[f"{USAGES}/page2"] = {
            "value": [usage("Standard NCASv3_T4 Family Cluster Dedicated vCPUs", 4, 8)]
        }
        state.documents[DELETED_VAULT] = {
            "name": "kv-phidev-abc123",
            "properties": {"location": "eastus2"},
        }
        state.documents[DELETED_LOGS] = {"value": [{"name": "log-phi-dev"}]}
        roles: Any = state.documents[ROLES]
        roles["value"] = roles["value"][:2]
        state.documents[f"{PROVIDERS}/Microsoft.Storage"] = {"registrationState": "NotRegistered"}

    code, out, _ = doctor(
        tmp_path,
        monkeypatch,
        capsys,
        broken,
        "--outputs",
        str(tmp_path / "outputs.json"),
        "--nodes",
        "2",
    )
    assert code == 1
    failed = {(row[0], row[2]): row[3] for row in rows(out) if row[1] == "FAIL"}
    assert any(
        "request 1 more vCPUs of standardNCASv3_T4Family in eastus2" in fix
        for fix in failed.values()
    )
    assert (
        failed[("quota", "the job asks for 2 nodes; the cluster has at most 1")]
        == "pulumi config set gpuMaxNodes 2 && pulumi up"
    )
    assert (
        "az keyvault purge --name kv-phidev-abc123 --location eastus2"
        in failed[("soft-deleted", "key vault kv-phidev-abc123 is soft-deleted")]
    )
    assert ("soft-deleted", "Log Analytics workspace log-phi-dev is soft-deleted") in failed
    assert any(key[0] == "roles" and "registries/crphidevabc123" in key[1] for key in failed)
    assert (
        failed[("providers", "Microsoft.Storage: NotRegistered")]
        == "az provider register --namespace Microsoft.Storage"
    )
    assert "check(s) failed" in out


def test_before_pulumi_up_the_stack_file_is_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text((ROOT / "Pulumi.dev.yaml").read_text())
    code, out, _ = doctor(
        tmp_path, monkeypatch, capsys, lambda s: None, "--stack", "dev", "--subscription", SUB
    )
    assert code == 0, out
    roles = [row for row in rows(out) if row[0] == "roles"]
    assert roles == [
        [
            "roles",
            "skip",
            "the identity exists after `pulumi up`",
            "run `phi doctor --outputs FILE` once the stack is up",
        ]
    ]


def test_a_foundry_stack_outside_the_serverless_regions_fails_the_models_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text(
        "config:\n  finetune-phi:location: swedencentral\n  finetune-phi:foundry: true\n"
    )

    def in_sweden(state: ArmState) -> None:
        for path in list(state.documents):
            if "/locations/eastus2/" in path:
                state.documents[path.replace("eastus2", "swedencentral")] = state.documents.pop(
                    path
                )
        state.documents[f"{PROVIDERS}/Microsoft.Network"] = {"registrationState": "Registered"}

    code, out, _ = doctor(
        tmp_path, monkeypatch, capsys, in_sweden, "--stack", "dev", "--subscription", SUB
    )
    assert code == 1
    [models] = [row for row in rows(out) if row[0] == "models" and row[1] == "FAIL"]
    assert models[2] == "serverless: Phi-4-mini-instruct is not offered in swedencentral"
    assert "eastus2" in models[3]


def test_bad_config_is_reported_without_a_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text(
        "config:\n  finetune-phi:gpuVmSize: Standard_NC6s_v3\n"
    )
    code, out, state = doctor(
        tmp_path, monkeypatch, capsys, lambda s: None, "--stack", "dev", "--subscription", SUB
    )
    assert code == 1
    assert "retired by Azure on 2025-09-30" in out
    assert state.calls == []


def test_a_redirect_is_never_followed_with_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def redirect(state: ArmState) -> None:
        state.redirects[USAGES] = "http://127.0.0.1:9/steal"

    code, out, state = doctor(
        tmp_path, monkeypatch, capsys, redirect, "--outputs", str(tmp_path / "outputs.json")
    )
    assert code == 1
    [quota] = [row for row in rows(out) if row[0] == "quota"]
    assert "redirect (HTTP 302)" in quota[2]
    assert not [call for call in state.calls if call.path == "/steal"]
    assert "not followed" in quota[2]


def test_a_refused_usage_list_is_one_quota_row_and_the_other_checks_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refused(state: ArmState) -> None:
        state.failing[USAGES] = (403, "AuthorizationFailed")

    code, out, _ = doctor(
        tmp_path, monkeypatch, capsys, refused, "--outputs", str(tmp_path / "outputs.json")
    )
    assert code == 1
    table = rows(out)
    assert [row for row in table if row[0] == "quota"] == [
        [
            "quota",
            "FAIL",
            "compute usage in eastus2: HTTP 403: AuthorizationFailed: AuthorizationFailed for test",
            "the signed-in identity needs Reader on the subscription",
        ]
    ]
    assert {row[0] for row in table} == set(CHECKS)
    assert [row[1] for row in table if row[0] != "quota"].count("FAIL") == 0


def test_a_next_link_off_resource_manager_gets_no_request_and_no_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def elsewhere(state: ArmState) -> None:
        usages: Any = state.documents[USAGES]
        usages["nextLink"] = "https://example.com/collect"

    code, out, state = doctor(
        tmp_path, monkeypatch, capsys, elsewhere, "--outputs", str(tmp_path / "outputs.json")
    )
    assert code == 1
    [quota] = [row for row in rows(out) if row[0] == "quota"]
    assert quota[2] == (f"https://example.com/collect leaves {ARM_ENDPOINT}; not followed")
    assert state.refused == []  # refused before the transport, let alone the token
    assert [call.path for call in state.calls if "usages" in call.path] == [USAGES]


def test_without_credentials_one_line_says_how_to_sign_in(
    tmp_path: Path, no_managed_identity: str
) -> None:
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS))
    result = subprocess.run(
        [
            str(BIN / "phi"),
            "doctor",
            "--outputs",
            str(tmp_path / "outputs.json"),
            "--arm-endpoint",
            "http://127.0.0.1:9",
        ],
        env=without_azure_sign_in(tmp_path, no_managed_identity),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert_one_sign_in_line(result)


def test_help_lists_the_checks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    out = capsys.readouterr().out
    for check in CHECKS:
        assert f"- {check}:" in out


@pytest.mark.parametrize("source", ["outputs", "stack"])
def test_without_credentials_the_config_check_still_runs_and_prints_its_row(
    tmp_path: Path, no_managed_identity: str, source: str
) -> None:
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS))
    chosen = (
        ["--outputs", str(tmp_path / "outputs.json")]
        if source == "outputs"
        else ["--stack", "dev", "--project-dir", str(ROOT), "--subscription", SUB]
    )
    result = subprocess.run(
        [str(BIN / "phi"), "doctor", *chosen, "--arm-endpoint", "http://127.0.0.1:9"],
        env=without_azure_sign_in(tmp_path, no_managed_identity),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert_one_sign_in_line(result)  # still one line on stderr, exit 2
    assert rows(result.stdout) == [["config", "pass", "the stack configuration is valid", ""]]


def test_a_bad_config_is_its_rows_and_exit_1_without_signing_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def never(*args: object) -> None:
        raise AssertionError("signed in")

    monkeypatch.setattr(doctor_cli, "signed_in", never)
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  finetune-phi:gpuMaxNodes: '0'\n")
    args = ["doctor", "--stack", "dev", "--project-dir", str(tmp_path), "--subscription", SUB]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert [row[:2] for row in rows(out)] == [["config", "FAIL"]]
    assert out.rstrip().endswith("1 check(s) failed")


@pytest.mark.parametrize(
    ("args", "variables", "outputs", "message"),
    [
        (
            ["--stack", "dev", "--subscription", "not-a-guid"],
            {},
            OUTPUTS,
            "--subscription 'not-a-guid': must be a subscription ID, a GUID like "
            "00000000-0000-0000-0000-000000000000",
        ),
        (
            ["--stack", "dev"],
            {"ARM_SUBSCRIPTION_ID": "my-subscription"},
            OUTPUTS,
            "$ARM_SUBSCRIPTION_ID 'my-subscription': must be a subscription ID",
        ),
        (
            ["--stack", "dev"],
            {"AZURE_SUBSCRIPTION_ID": SUB[:-1]},
            OUTPUTS,
            f"$AZURE_SUBSCRIPTION_ID '{SUB[:-1]}': must be a subscription ID",
        ),
        (
            ["--outputs", "outputs.json"],
            {},
            {**OUTPUTS, "subscriptionId": "sub-1"},
            "--outputs outputs.json: subscriptionId 'sub-1': must be a subscription ID",
        ),
        (
            ["--outputs", "outputs.json", "--subscription", SUB],
            {},
            OUTPUTS,
            "--subscription goes with --stack; --outputs names its own subscriptionId",
        ),
        (
            ["--outputs", "outputs.json", "--instance-type", "Standard_XYZ"],
            {},
            OUTPUTS,
            "--instance-type 'Standard_XYZ': not a VM size in "
            "src/finetune_phi/core/azure_facts.py; one of Standard_NC4as_T4_v3,",
        ),
        (
            ["--outputs", "outputs.json", "--instance-type", "Standard_NC6s_v3"],
            {},
            OUTPUTS,
            "--instance-type Standard_NC6s_v3 was retired by Azure on 2025-09-30; use ",
        ),
        (["--outputs", "outputs.json", "--nodes", "0"], {}, OUTPUTS, "--nodes 0: must be 1"),
        (
            ["--outputs", "outputs.json", "--gpus-per-node", "-1"],
            {},
            OUTPUTS,
            "--gpus-per-node -1: must be 1 or more",
        ),
        (
            ["--outputs", "outputs.json", "--instance-count", "21"],
            {},
            OUTPUTS,
            "--instance-count 21: must be between 1 and 20",
        ),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2_before_anything_is_sent(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    variables: dict[str, str],
    outputs: dict[str, Any],
    message: str,
) -> None:
    def never(*args: object) -> None:
        raise AssertionError("signed in")

    monkeypatch.setattr(doctor_cli, "signed_in", never)
    monkeypatch.chdir(tmp_path)
    for name in doctor_cli.SUBSCRIPTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    assert main(["doctor", "--project-dir", str(ROOT), *args]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(f"phi: error: {message}")
    assert captured.out == ""
