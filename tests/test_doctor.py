"""`phi doctor`: every check against a stand-in for Azure Resource Manager that answers
with the shapes of Azure's documented responses; no credentials in one line."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from finetune_phi.cli import doctor as doctor_cli
from finetune_phi.cli import options
from finetune_phi.cli.main import build_parser, main
from finetune_phi.cloud import doctor as doctor_module
from finetune_phi.cloud.doctor import CHECKS, Clients
from finetune_phi.core.arm import ARM_ENDPOINT, ARM_SCOPE
from finetune_phi.core.azure_facts import (
    API_VERSIONS,
    BASE_IMAGE_CHECKED,
    BASE_IMAGE_MAX_AGE_DAYS,
    BASE_IMAGES,
    DEFAULT_BASE_IMAGE,
    QUOTA_REQUEST,
    VM_SIZES,
)
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


ML = "Microsoft.MachineLearningServices"
WORKSPACE_ID = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/{ML}/workspaces/mlw-phi-dev"


def usage(
    name: str, current: int, limit: int, kind: str = "vmFamily", under: str = ""
) -> dict[str, Any]:
    """One row of Azure ML's usage list as azure-rest-api-specs' example Usage/list.json
    (stable/2024-10-01) shows them: `kind` is what its type names (vmFamily, dedicatedCores,
    lowPriorityCores, totalCores, workspaces, workspace, workspaces/computes,
    workspace/computes); `under` the workspace or cluster of a scoped row."""
    base = under or f"/subscriptions/{SUB}/providers/{ML}/locations/eastus2"
    return {
        "id": f"{base}/usages/{name.replace(' ', '_')}",
        "type": f"{ML}/{kind}/usages",
        "currentValue": current,
        "limit": limit,
        "name": {"value": name, "localizedValue": name},
        "unit": "Count",
    }


T4_FAMILY = "Standard NCASv3_T4 Family Cluster Dedicated vCPUs"
A100_FAMILY = "Standard NCADSA100v4 Family Cluster Dedicated vCPUs"
REGIONAL = "Total Cluster Dedicated Regional vCPUs"
LOW_PRIORITY = "Total Cluster LowPriority Regional vCPUs"


def usage_pages(
    state: ArmState,
    *,
    t4_free: int = 8,
    a100_free: int = 24,
    regional_free: int = 100,
    low_priority_free: int = 100,
) -> None:
    """The usage list on two pages, its subscription rows with what is free, and beside them
    workspace- and compute-scoped rows of the same names with much more free (as the REST
    example has them, some typed `workspace/...`): none of those may count."""
    workspace = WORKSPACE_ID
    cluster = f"{WORKSPACE_ID}/computes/gpu-phidev"
    state.documents[USAGES] = {
        "value": [
            usage("Clusters", 7, 100, "totalCores"),
            usage(REGIONAL, 100 - regional_free, 100, "dedicatedCores"),
            usage(A100_FAMILY, 24 - a100_free, 24),
            usage("Standard NCADSA100v4 Family Cluster LowPriority vCPUs", 0, -1),
            usage(T4_FAMILY, 0, 400, "workspaces", workspace),
            usage(A100_FAMILY, 0, 400, "workspace", workspace),
            usage(REGIONAL, 0, 400, "workspaces", workspace),
        ],
        "nextLink": f"{{endpoint}}{USAGES}/page2",
    }
    state.documents[f"{USAGES}/page2"] = {
        "value": [
            usage(T4_FAMILY, 0, 400, "workspace/computes", cluster),
            usage(T4_FAMILY, 0, 400, "workspaces/computes", cluster),
            usage(T4_FAMILY, 100 - t4_free, 100),
            usage(LOW_PRIORITY, 100 - low_priority_free, 100, "lowPriorityCores"),
        ]
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
    usage_pages(state)
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
    quota = [row[2] for row in table if row[0] == "quota"]
    assert [detail.split(" (")[0] for detail in quota] == [
        f"{A100_FAMILY}: 24 vCPUs needed, 24 free",
        f"{REGIONAL}: 32 vCPUs needed, 100 free",  # the job's 24 and the deployment's 8
        f"{T4_FAMILY}: 8 vCPUs needed, 8 free",
    ]
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
        usage_pages(state, t4_free=4)
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
        f"request 4 more vCPUs of {T4_FAMILY} in eastus2 ({QUOTA_REQUEST})" in fix
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


def test_help_lists_the_checks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    out = capsys.readouterr().out
    for check in CHECKS:
        assert f"- {check}:" in out


@pytest.mark.parametrize("source", ["outputs", "stack"])
def test_without_credentials_one_line_says_how_to_sign_in_after_the_config_check(
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
    for name in options.SUBSCRIPTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    assert main(["doctor", "--project-dir", str(ROOT), *args]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(f"phi: error: {message}")
    assert captured.out == ""


# Quota as Azure counts it --------------------------------------------------------------------

QUOTA_DOCS = "azure-ai-docs includes/quota-allocation-online-deployment.md (12/07/2023)"


@pytest.mark.parametrize(
    ("size", "instances", "vcpus"),
    [
        ("Standard_NC4as_T4_v3", 1, 8),  # ceil(1.2) = 2 instances of 4 vCPUs
        ("Standard_NC4as_T4_v3", 2, 12),  # ceil(2.4) = 3
        ("Standard_NC4as_T4_v3", 3, 16),  # ceil(3.6) = 4
        ("Standard_E4s_v3", 10, 48),  # the documented example: 10 x 4 cores -> 12 x 4
        ("Standard_E4s_v3", 5, 24),  # exactly 6 instances, not 7 (1.2 x 5 in floats)
        ("Standard_ND96amsr_A100_v4", 1, 96),  # "Skip 20% Reservation": its vCPUs only
        ("Standard_NC24ads_A100_v4", 3, 72),
    ],
)
def test_a_deployment_needs_whole_reserved_instances_unless_its_size_skips_the_reserve(
    size: str, instances: int, vcpus: int
) -> None:
    """ceil(1.2 x instances) x vCPUs, as the documentation counts (QUOTA_DOCS)."""
    assert doctor_module.deployment_vcpus(VM_SIZES[size], instances) == vcpus


def plan(**changes: Any) -> doctor_module.Preflight:
    """The dev stack's preflight: one A100 job node, one T4 deployment instance."""
    base: dict[str, Any] = {
        "subscription_id": SUB,
        "location": "eastus2",
        "resource_group": RG,
        "key_vault": "kv-phidev-abc123",
        "log_analytics": "log-phi-dev",
        "ml_workspaces": ("mlw-phi-dev",),
        "storage_account": "stphidevabc123",
        "container_registry": "crphidevabc123",
        "gpu_vm_size": "Standard_NC24ads_A100_v4",
        "gpu_max_nodes": 4,
        "foundry": False,
        "deployment_vm_size": "Standard_NC4as_T4_v3",
    }
    return doctor_module.Preflight(**{**base, **changes})


def quota_rows(preflight: doctor_module.Preflight, **free: int) -> list[doctor_module.Row]:
    """`check_quota` through azure-ai-ml's real `list_usage` (its deserialization included),
    against the stand-in answering the REST example's shapes."""
    with arm_server() as (endpoint, state):
        usage_pages(state, **free)
        for document in state.documents.values():
            if isinstance(document, dict) and "nextLink" in document:
                document["nextLink"] = str(document["nextLink"]).replace("{endpoint}", ARM_ENDPOINT)
        session = arm_session(endpoint, state)
        compute = Clients.signed_in(FakeCredential(), SUB, session).compute
        rows = doctor_module.check_quota(preflight, compute)
    assert state.refused == []
    return rows


def test_usage_rows_are_read_as_azure_ai_ml_gives_them() -> None:
    """azure-ai-ml 1.35's `Usage` keeps the wire names: the count is in `currentValue`
    (`current_value` stays None) and `name` is a dict; the type says whose row it is."""
    with arm_server() as (endpoint, state):
        usage_pages(state, t4_free=7)
        for document in state.documents.values():
            if isinstance(document, dict) and "nextLink" in document:
                document["nextLink"] = str(document["nextLink"]).replace("{endpoint}", ARM_ENDPOINT)
        compute = Clients.signed_in(FakeCredential(), SUB, arm_session(endpoint, state)).compute
        raw = list(compute.list_usage(location="eastus2"))
        found = doctor_module.usages(compute, "eastus2")
    assert raw[0].current_value is None
    assert isinstance(raw[0].name, dict)
    t4 = [u for u in found if u.name == T4_FAMILY]
    assert [(u.scope, u.limit - u.current) for u in t4] == [
        ("workspace", 400),
        ("compute", 400),  # typed workspace/computes/usages, singular
        ("compute", 400),
        ("family", 7),
    ]
    assert {u.scope for u in found if u.name == A100_FAMILY} == {"family", "workspace"}
    assert [u.current for u in found if u.scope == "total"] == [7]


def test_the_regional_total_counts_the_job_and_the_deployment_together() -> None:
    rows = quota_rows(plan(), regional_free=31)
    [regional] = [row for row in rows if row.detail.startswith(REGIONAL)]
    assert regional.ok is False
    assert regional.detail.startswith(f"{REGIONAL}: 32 vCPUs needed, 31 free (fine-tune job 1 x")
    assert regional.fix.startswith(
        f"request 1 more vCPUs of {REGIONAL} in eastus2 ({QUOTA_REQUEST}), or a smaller "
        "gpuVmSize or fewer --nodes, or a smaller --instance-type"
    )
    # the families themselves have enough
    assert all(row.ok for row in rows if not row.detail.startswith(REGIONAL))


def test_an_exempt_deployment_size_needs_exactly_its_vcpus() -> None:
    rows = quota_rows(plan(deployment_vm_size="Standard_NC24ads_A100_v4"), a100_free=48)
    [family] = [row for row in rows if row.detail.startswith(A100_FAMILY)]
    assert family.ok is True
    assert family.detail.startswith(f"{A100_FAMILY}: 48 vCPUs needed, 48 free")
    assert "Azure holds no reserve on this size" in family.detail


def test_a_low_priority_job_counts_against_the_regional_low_priority_pool() -> None:
    """Not against its family's dedicated vCPUs (0 free here) nor the dedicated total; the
    deployment still does."""
    rows = quota_rows(plan(gpu_priority="LowPriority"), a100_free=0, low_priority_free=23)
    details = [row.detail.split(" (")[0] for row in rows]
    assert details == [
        f"{LOW_PRIORITY}: 24 vCPUs needed, 23 free",
        f"{T4_FAMILY}: 8 vCPUs needed, 8 free",
        f"{REGIONAL}: 8 vCPUs needed, 100 free",
    ]
    assert [row.ok for row in rows] == [False, True, True]
    assert rows[0].fix.startswith(f"request 1 more vCPUs of {LOW_PRIORITY} in eastus2")
    assert "low priority" in rows[0].detail


def test_a_quota_azure_does_not_list_fails_with_the_request_to_make() -> None:
    rows = quota_rows(plan(deployment_vm_size="Standard_NV36ads_A10_v5"))
    [missing] = [row for row in rows if row.ok is False]
    assert missing.detail.startswith(
        "standardNVADSA10v5Family dedicated vCPUs: Azure lists no such quota in eastus2; "
        "72 vCPUs needed"  # ceil(1.2) = 2 x 36
    )
    assert (
        f"request 72 vCPUs of standardNVADSA10v5Family dedicated vCPUs in eastus2 ({QUOTA_REQUEST})"
        in missing.fix
    )


@pytest.mark.parametrize(("free", "code"), [(7, 1), (8, 0)])
def test_the_dev_stack_needs_eight_free_t4_vcpus_for_one_deployment_instance(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    free: int,
    code: int,
) -> None:
    """`phi doctor --stack dev` as shipped: one Standard_NC4as_T4_v3 instance needs 8 vCPUs
    of its family (the workspace rows beside it with 400 free do not count)."""
    (tmp_path / "Pulumi.dev.yaml").write_text((ROOT / "Pulumi.dev.yaml").read_text())
    found, out, _ = doctor(
        tmp_path,
        monkeypatch,
        capsys,
        lambda state: usage_pages(state, t4_free=free),
        "--stack",
        "dev",
        "--subscription",
        SUB,
    )
    assert found == code, out
    [t4] = [row for row in rows(out) if row[0] == "quota" and row[2].startswith(T4_FAMILY)]
    assert t4[1] == ("FAIL" if free < 8 else "pass")
    assert t4[2].startswith(f"{T4_FAMILY}: 8 vCPUs needed, {free} free (deployment 1 x")
    if free < 8:
        assert t4[3].startswith(f"request 1 more vCPUs of {T4_FAMILY} in eastus2 ({QUOTA_REQUEST})")
        assert t4[3].endswith("or a smaller --instance-type or a lower --instance-count")


def test_a_low_priority_stack_reads_its_priority_from_the_stack_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text(
        (ROOT / "Pulumi.dev.yaml").read_text() + "  finetune-phi:gpuPriority: LowPriority\n"
    )
    code, out, _ = doctor(
        tmp_path,
        monkeypatch,
        capsys,
        lambda state: usage_pages(state, a100_free=0),
        "--stack",
        "dev",
        "--subscription",
        SUB,
    )
    assert code == 0, out
    quota = [row[2].split(" (")[0] for row in rows(out) if row[0] == "quota"]
    assert f"{LOW_PRIORITY}: 24 vCPUs needed, 100 free" in quota
    assert not [detail for detail in quota if detail.startswith(A100_FAMILY)]


# The other rows ------------------------------------------------------------------------------


def test_images_checked_within_180_days_pass_and_older_ones_warn_naming_where_to_look() -> None:
    fresh = doctor_module.check_images(BASE_IMAGE_CHECKED + timedelta(days=BASE_IMAGE_MAX_AGE_DAYS))
    assert [(row.check, row.result) for row in fresh] == [("images", "pass")]
    stale = doctor_module.check_images(
        BASE_IMAGE_CHECKED + timedelta(days=BASE_IMAGE_MAX_AGE_DAYS + 1)
    )
    current = [image for image in BASE_IMAGES.values() if image.deprecated is None]
    assert [row.result for row in stale] == ["warn"] * len(current)
    assert all(row.ok is None for row in stale)  # never a failure
    default = next(row for row in stale if row.detail.startswith(DEFAULT_BASE_IMAGE.reference))
    assert "181 days ago (more than 180)" in default.detail
    assert default.fix.startswith(
        "look for a newer tag at https://mcr.microsoft.com/v2/azureml/"
        "openmpi5.0-cuda12.8-ubuntu24.04/tags/list"
    )


def test_a_stale_image_warns_but_phi_doctor_still_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    later = BASE_IMAGE_CHECKED + timedelta(days=365)
    monkeypatch.setattr(doctor_module, "today", lambda: later)
    code, out, _ = doctor(
        tmp_path, monkeypatch, capsys, lambda s: None, "--outputs", str(tmp_path / "outputs.json")
    )
    assert code == 0, out
    images = [row for row in rows(out) if row[0] == "images"]
    assert images
    assert {row[1] for row in images} == {"warn"}
    current = [image for image in BASE_IMAGES.values() if image.deprecated is None]
    assert f"all checks passed ({len(current)} warning(s))" in out


def test_the_soft_deleted_workspace_row_names_a_command_that_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = doctor(
        tmp_path, monkeypatch, capsys, lambda s: None, "--outputs", str(tmp_path / "outputs.json")
    )
    [row] = [row for row in rows(out) if row[0] == "soft-deleted" and row[1] == "skip"]
    assert "`phi cleanup --stack dev --purge` avoids them" in row[3]
    assert "python -m" not in row[3]
    command = row[3].split("`")[1].split()
    parsed = build_parser().parse_args(command[1:])
    assert (parsed.stack, parsed.purge) == ("dev", True)
