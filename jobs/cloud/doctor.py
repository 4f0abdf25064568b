"""`phi doctor`: a read-only preflight of a stack before `pulumi up`, `phi finetune submit`
and `phi deploy`. It sends only GET requests to Azure Resource Manager.

Checks, one row each, with the fix when one fails:

- config: the stack's configuration is valid (retired VM sizes included);
- quota: free vCPU quota of each VM family the fine-tune job and the deployment need, in the
  stack's region (Azure ML's usage API; deployments reserve 20 % extra on most sizes);
- models: the catalog and serverless paths' model is offered for that path and region;
- soft-deleted: a key vault or Log Analytics workspace with this stack's names that Azure
  keeps soft-deleted blocks `pulumi up`; ML workspaces are listed by the portal only;
- roles: the identity holds Contributor, Storage Blob Data Reader and AcrPull (after up);
- providers: the resource providers the stack needs are registered.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from infra.arm import ArmClient, ArmError, segment
from infra.azure_facts import API_VERSIONS, DEFAULT_CATALOG_MODEL, MODELS, VM_SIZES
from infra.roles import BuiltInRole

CHECKS = ("config", "quota", "models", "soft-deleted", "roles", "providers")
PROVIDERS = (
    "Microsoft.MachineLearningServices",
    "Microsoft.Storage",
    "Microsoft.KeyVault",
    "Microsoft.ContainerRegistry",
    "Microsoft.Insights",
    "Microsoft.OperationalInsights",
    "Microsoft.ManagedIdentity",
)
# Serverless fine-tuning also needs Microsoft.Network (azure-ai-docs fine-tune-serverless.md).
FOUNDRY_PROVIDERS = ("Microsoft.Network",)
DEPLOYMENT_RESERVE = 1.2
"""Managed online deployments reserve 20 % extra vCPUs, except on sizes that skip it."""


@dataclass(frozen=True)
class Row:
    check: str
    ok: bool | None
    """True passed, False failed, None not checked (the detail says why)."""
    detail: str
    fix: str = ""

    @property
    def result(self) -> str:
        return {True: "pass", False: "FAIL", None: "skip"}[self.ok]


@dataclass(frozen=True)
class Preflight:
    """What the checks look at: the stack's names and sizes, and what will run on it."""

    subscription_id: str
    location: str
    resource_group: str
    key_vault: str
    log_analytics: str
    ml_workspaces: tuple[str, ...]
    storage_account: str
    container_registry: str
    gpu_vm_size: str
    gpu_max_nodes: int
    foundry: bool
    identity_principal_id: str | None = None
    job_nodes: int = 1
    job_gpus_per_node: int = 1
    deployment_vm_size: str = ""
    deployment_instances: int = 1


def normalized(name: str) -> str:
    return re.sub(r"[\s_]", "", name).lower()


def check_config(problems: list[str]) -> list[Row]:
    if problems:
        return [Row("config", False, p, "fix the key in Pulumi.<stack>.yaml") for p in problems]
    return [Row("config", True, "the stack configuration is valid")]


def quota_needs(plan: Preflight) -> tuple[dict[str, list[str]], dict[str, int], list[Row]]:
    """(family -> what needs it, family -> vCPUs needed, rows for sizes that cannot be counted)."""
    needs: dict[str, int] = {}
    reasons: dict[str, list[str]] = {}
    rows = []

    def need(size_name: str, vcpus: float, what: str) -> None:
        size = VM_SIZES[size_name]
        needs[size.family] = needs.get(size.family, 0) + math.ceil(vcpus)
        reasons.setdefault(size.family, []).append(what)

    train = VM_SIZES.get(plan.gpu_vm_size)
    if train is None:
        rows.append(Row("quota", None, f"{plan.gpu_vm_size} is not in the table of Azure facts",
                        "add it to infra/azure_facts.py to have its quota checked"))  # fmt: skip
    else:
        if plan.job_nodes > plan.gpu_max_nodes:
            rows.append(Row("quota", False, f"the job asks for {plan.job_nodes} nodes; the cluster has at most {plan.gpu_max_nodes}",
                            f"pulumi config set gpuMaxNodes {plan.job_nodes} && pulumi up"))  # fmt: skip
        if plan.job_gpus_per_node > train.gpus:
            rows.append(Row("quota", False, f"the job asks for {plan.job_gpus_per_node} GPUs per node; {train.name} has {train.gpus}",
                            "--gpus-per-node at most the size's GPUs, or a larger gpuVmSize"))  # fmt: skip
        need(train.name, plan.job_nodes * train.vcpus,
             f"fine-tune job {plan.job_nodes} x {train.name} ({train.vcpus} vCPUs)")  # fmt: skip
    serving = VM_SIZES.get(plan.deployment_vm_size)
    if serving is None:
        rows.append(Row("quota", None, f"{plan.deployment_vm_size} is not in the table of Azure facts",
                        "add it to infra/azure_facts.py to have its quota checked"))  # fmt: skip
    else:
        reserve = 1.0 if serving.skips_reservation else DEPLOYMENT_RESERVE
        need(serving.name, plan.deployment_instances * serving.vcpus * reserve,
             f"deployment {plan.deployment_instances} x {serving.name}"
             + ("" if serving.skips_reservation else " (+20 % reserved)"))  # fmt: skip
    return reasons, needs, rows


def check_quota(plan: Preflight, arm: ArmClient) -> list[Row]:
    reasons, needs, rows = quota_needs(plan)
    version = API_VERSIONS["Microsoft.MachineLearningServices"]
    usages = list(arm.list(
        f"/subscriptions/{segment(plan.subscription_id)}/providers/Microsoft.MachineLearningServices"
        f"/locations/{segment(plan.location)}/usages?api-version={version}"
    ))  # fmt: skip
    for family, vcpus in needs.items():
        usage = next(
            (
                u
                for u in usages
                if normalized(u.get("name", {}).get("value", "")).startswith(normalized(family))
                and "lowpriority" not in normalized(u.get("name", {}).get("value", ""))
            ),
            None,
        )
        what = "; ".join(reasons[family])
        if usage is None:
            rows.append(Row("quota", False, f"{family}: no quota in {plan.location} ({what})",
                            f"request {vcpus} vCPUs of {family} in {plan.location} (portal: Quotas > Machine learning)"))  # fmt: skip
            continue
        free = int(usage.get("limit", 0)) - int(usage.get("currentValue", 0))
        detail = f"{usage['name']['value']}: {vcpus} vCPUs needed, {free} free ({what})"
        fix = "" if free >= vcpus else (
            f"request {vcpus - free} more vCPUs of {family} in {plan.location} "
            "(portal: Quotas > Machine learning), or choose a smaller size"
        )  # fmt: skip
        rows.append(Row("quota", free >= vcpus, detail, fix))
    return rows


def check_models(plan: Preflight) -> list[Row]:
    model = MODELS[DEFAULT_CATALOG_MODEL]
    rows = [
        Row("models", model.catalog_finetune and model.retired is None,
            f"catalog: {model.registry_name} fine-tunes on the stack's cluster"),
    ]  # fmt: skip
    if not plan.foundry:
        rows.append(Row("models", None, "serverless: the stack has no Foundry project",
                        "pulumi config set foundry true, for --method serverless"))  # fmt: skip
    elif plan.location in model.serverless_regions:
        rows.append(Row("models", True, f"serverless: {model.registry_name} in {plan.location}"))
    else:
        rows.append(Row("models", False,
                        f"serverless: {model.registry_name} is not offered in {plan.location}",
                        f"a stack in one of {', '.join(model.serverless_regions)}, or --method catalog"))  # fmt: skip
    return rows


def check_soft_deleted(plan: Preflight, arm: ArmClient) -> list[Row]:
    sub, location = segment(plan.subscription_id), segment(plan.location)
    vault = arm.get(
        f"/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/{location}"
        f"/deletedVaults/{segment(plan.key_vault)}?api-version={API_VERSIONS['Microsoft.KeyVault']}"
    )
    rows = [
        Row("soft-deleted", False, f"key vault {plan.key_vault} is soft-deleted",
            f"az keyvault purge --name {plan.key_vault} --location {plan.location} "
            "(impossible with purge protection: set keyVaultName to a new name)")
        if vault is not None
        else Row("soft-deleted", True, f"no soft-deleted key vault {plan.key_vault}")
    ]  # fmt: skip
    logs = {
        str(item.get("name", "")).lower()
        for item in arm.list(
            f"/subscriptions/{sub}/providers/Microsoft.OperationalInsights/deletedWorkspaces"
            f"?api-version={API_VERSIONS['Microsoft.OperationalInsights']}"
        )
    }
    rows.append(
        Row("soft-deleted", False, f"Log Analytics workspace {plan.log_analytics} is soft-deleted",
            f"recover it, or delete it for good: az monitor log-analytics workspace delete --force "
            f"--resource-group {plan.resource_group} --workspace-name {plan.log_analytics}")
        if plan.log_analytics.lower() in logs
        else Row("soft-deleted", True, f"no soft-deleted Log Analytics workspace {plan.log_analytics}")
    )  # fmt: skip
    rows.append(Row("soft-deleted", None,
                    f"ML workspaces {', '.join(plan.ml_workspaces)}: Azure lists soft-deleted ones in the portal only",
                    "Azure ML studio > Recently deleted workspaces; `python -m infra.cleanup --purge` avoids them"))  # fmt: skip
    return rows


def check_roles(plan: Preflight, arm: ArmClient) -> list[Row]:
    if not plan.identity_principal_id:
        return [Row("roles", None, "the identity exists after `pulumi up`",
                    "run `phi doctor --outputs FILE` once the stack is up")]  # fmt: skip
    sub = segment(plan.subscription_id)
    assignments = list(arm.list(
        f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments"
        f"?$filter=principalId%20eq%20'{segment(plan.identity_principal_id)}'"
        f"&api-version={API_VERSIONS['Microsoft.Authorization']}"
    ))  # fmt: skip
    group = f"/resourcegroups/{plan.resource_group}".lower()
    expected = {
        BuiltInRole.CONTRIBUTOR: group,
        BuiltInRole.STORAGE_BLOB_DATA_READER: f"/storageaccounts/{plan.storage_account}".lower(),
        BuiltInRole.ACR_PULL: f"/registries/{plan.container_registry}".lower(),
    }
    rows = []
    for role, scope in expected.items():
        held = any(
            str(a.get("properties", {}).get("roleDefinitionId", "")).lower().endswith(role.value)
            and str(a.get("properties", {}).get("scope", "")).lower().endswith(scope)
            for a in assignments
        )
        name = role.name.replace("_", " ").title()
        rows.append(Row("roles", held, f"{name} on ...{scope}",
                        "" if held else "run `pulumi up` again: the stack grants it"))  # fmt: skip
    return rows


def check_providers(plan: Preflight, arm: ArmClient) -> list[Row]:
    rows = []
    version = API_VERSIONS["Microsoft.Resources"]
    for namespace in (*PROVIDERS, *(FOUNDRY_PROVIDERS if plan.foundry else ())):
        found = arm.get(
            f"/subscriptions/{segment(plan.subscription_id)}/providers/{namespace}?api-version={version}"
        )
        state = (found or {}).get("registrationState", "NotRegistered")
        rows.append(Row("providers", state == "Registered", f"{namespace}: {state}",
                        "" if state == "Registered" else f"az provider register --namespace {namespace}"))  # fmt: skip
    return rows


def run(plan: Preflight, arm: ArmClient) -> list[Row]:
    """Every check, in order; a check that Azure refuses becomes a failed row of its own."""
    checks: list[Callable[[], Iterable[Row]]] = [
        lambda: check_config([]),
        lambda: check_quota(plan, arm),
        lambda: check_models(plan),
        lambda: check_soft_deleted(plan, arm),
        lambda: check_roles(plan, arm),
        lambda: check_providers(plan, arm),
    ]
    rows: list[Row] = []
    for name, check in zip(CHECKS, checks, strict=True):
        try:
            rows.extend(check())
        except ArmError as error:
            rows.append(
                Row(
                    name,
                    False,
                    str(error),
                    "the signed-in identity needs Reader on the subscription",
                )
            )
    return rows


def render(rows: list[Row]) -> str:
    lines = ["| check | result | detail | fix |", "|---|---|---|---|"]
    lines += [f"| {r.check} | {r.result} | {r.detail} | {r.fix} |" for r in rows]
    failed = sum(r.ok is False for r in rows)
    lines.append(f"\n{failed} check(s) failed" if failed else "\nall checks passed")
    return "\n".join(lines)
