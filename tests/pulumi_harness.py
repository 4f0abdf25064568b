"""Runs the Pulumi program under the SDK's mocks and records what it registers.

The recording monitor sits where the Pulumi engine would: it sees each RegisterResource
request with its inputs *and* its options (ignoreChanges, dependencies, replaceOnChanges),
so tests can check what the engine would be asked to do, not just the Python objects.
"""

from __future__ import annotations

import asyncio
import runpy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import get_root_resource

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "infra" / "__main__.py"

SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000001"
TENANT_ID = "00000000-0000-0000-0000-0000000000aa"
MOCK_ENDPOINT_KEY = "mock-primary-endpoint-key"


@dataclass
class Registration:
    type: str
    name: str
    inputs: dict[str, Any]
    ignore_changes: list[str]
    replace_on_changes: list[str]
    delete_before_replace: bool
    dependencies: list[str]
    parent: str
    urn: str = ""
    wire_inputs: dict[str, Any] = field(default_factory=dict)
    """The inputs as the engine receives them, secret markers included."""


@dataclass
class Recording:
    registrations: list[Registration] = field(default_factory=list)
    invokes: list[str] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def one(self, type_: str, name_contains: str = "") -> Registration:
        found = [r for r in self.of_type(type_) if name_contains in r.name]
        assert len(found) == 1, f"expected one {type_} named *{name_contains}*, got {found}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    @property
    def custom(self) -> list[Registration]:
        return [
            r for r in self.registrations if not r.type.startswith(("finetune-phi:", "pulumi:"))
        ]


# Every resource type the program declares: the input that names it, and its ARM path
# ("" where the module and type name make the path, as for the role assignment).
RESOURCE_TYPES: dict[str, tuple[str, str]] = {
    "azure-native:resources:ResourceGroup": ("resourceGroupName", ""),
    "azure-native:storage:StorageAccount": ("accountName", "Microsoft.Storage/storageAccounts"),
    "azure-native:keyvault:Vault": ("vaultName", "Microsoft.KeyVault/vaults"),
    "azure-native:operationalinsights:Workspace": (
        "workspaceName",
        "Microsoft.OperationalInsights/workspaces",
    ),
    "azure-native:applicationinsights:Component": ("resourceName", "Microsoft.Insights/components"),
    "azure-native:containerregistry:Registry": (
        "registryName",
        "Microsoft.ContainerRegistry/registries",
    ),
    "azure-native:machinelearningservices:Workspace": (
        "workspaceName",
        "Microsoft.MachineLearningServices/workspaces",
    ),
    "azure-native:managedidentity:UserAssignedIdentity": (
        "resourceName",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
    ),
    "azure-native:authorization:RoleAssignment": ("roleAssignmentName", ""),
    "azure-native:machinelearningservices:Compute": ("computeName", ""),
    "azure-native:machinelearningservices:OnlineEndpoint": ("endpointName", ""),
    "azure-native:machinelearningservices:WorkspaceConnection": ("connectionName", ""),
    "azure-native:cognitiveservices:Account": (
        "accountName",
        "Microsoft.CognitiveServices/accounts",
    ),
}


def _arm_id(type_: str, name: str, inputs: Mapping[str, Any]) -> str:
    base = (
        f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{inputs.get('resourceGroupName', 'rg')}"
    )
    if type_ == "azure-native:resources:ResourceGroup":
        return base
    provider = RESOURCE_TYPES[type_][1] or "/".join(type_.split(":")[1:])
    return f"{base}/providers/{provider}/{name}"


class AzureMocks(pulumi.runtime.Mocks):
    """Answers like Azure would: ids, computed properties, and outputs in output shape."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        if not args.custom:  # our ComponentResources: no Azure resource behind them
            return args.name, inputs
        name = inputs.get(RESOURCE_TYPES[args.typ][0], args.name)
        arm_id = _arm_id(args.typ, name, inputs)
        state: dict[str, Any] = {**inputs, "name": name}
        identity = inputs.get("identity")
        if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
            # An input list of ids comes back as an output map keyed by id.
            state["identity"] = {
                **identity,
                "userAssignedIdentities": {
                    uid: {"principalId": "p", "clientId": "c"}
                    for uid in identity["userAssignedIdentities"]
                },
            }
        if args.typ == "azure-native:managedidentity:UserAssignedIdentity":
            state["principalId"] = f"principal-of-{name}"
            state["clientId"] = f"client-of-{name}"
        if args.typ == "azure-native:keyvault:Vault":
            state["properties"] = {
                **inputs["properties"],
                "vaultUri": f"https://{name}.vault.azure.net/",
            }
        if args.typ == "azure-native:machinelearningservices:Workspace":
            state["workspaceId"] = str(uuid.uuid5(uuid.NAMESPACE_URL, arm_id))
        if args.typ == "azure-native:containerregistry:Registry":
            state["loginServer"] = f"{name}.azurecr.io"
        if args.typ == "azure-native:machinelearningservices:OnlineEndpoint":
            state["properties"] = {
                **inputs["properties"],
                "scoringUri": f"https://{name}.{inputs['location']}.inference.ml.azure.com/score",
            }
        if args.typ == "azure-native:cognitiveservices:Account":
            subdomain = inputs["properties"]["customSubDomainName"]
            state["properties"] = {
                **inputs["properties"],
                "endpoint": f"https://{subdomain}.cognitiveservices.azure.com/",
            }
        return arm_id, state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.recording.invokes.append(args.token)
        if args.token == "azure-native:authorization:getClientConfig":
            return {
                "subscriptionId": SUBSCRIPTION_ID,
                "tenantId": TENANT_ID,
                "clientId": "client",
                "objectId": "object",
            }, []
        if args.token == "azure-native:machinelearningservices:listOnlineEndpointKeys":
            return {"primaryKey": MOCK_ENDPOINT_KEY, "secondaryKey": "mock-secondary"}, []
        if args.token == "azure-native:resources:getResourceGroup":
            name = args.args["resourceGroupName"]
            return {
                "id": f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{name}",
                "name": name,
                "location": "eastus2",
            }, []
        raise NotImplementedError(f"no mock for invoke {args.token}")


def _reveal(value: Any) -> Any:
    """Plain values for assertions; `wire_inputs` keeps the secret markers."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _reveal(value["value"])
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: AzureMocks, recording: Recording) -> None:
        super().__init__(mocks)
        self.recording = recording

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.recording.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    inputs=_reveal(rpc.deserialize_properties(request.object)),
                    ignore_changes=list(request.ignoreChanges),
                    replace_on_changes=list(request.replaceOnChanges),
                    delete_before_replace=request.deleteBeforeReplace,
                    dependencies=list(request.dependencies),
                    parent=request.parent,
                    urn=response.urn,
                    wire_inputs=json_format.MessageToDict(request.object),
                )
            )
        return response


@dataclass
class Deployment:
    recording: Recording
    outputs: dict[str, Any]


def deploy(stack: str, config: Mapping[str, str], recording: Recording | None = None) -> Deployment:
    """Run the real `infra/__main__.py` for `stack` under mocks; return what it did.

    Raises whatever the program raises (a ConfigError, say) after the engine is idle;
    pass `recording` to see what was registered until then.
    """
    recording = recording if recording is not None else Recording()
    mocks = AzureMocks(recording)
    # Pulumi's test runner takes the thread's current event loop; a library that used
    # asyncio.run() earlier in the session (azure-ai-evaluation does) leaves none behind.
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(
        mocks,
        project="finetune-phi",
        stack=stack,
        preview=False,
        monitor=RecordingMonitor(mocks, recording),
    )
    pulumi.runtime.set_all_config({f"finetune-phi:{k}": v for k, v in config.items()})
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[None]:
        runpy.run_path(str(PROGRAM), run_name="__main__")
        exported = get_root_resource().outputs  # type: ignore[union-attr]
        return pulumi.Output.from_input(exported).apply(outputs.update)

    program()
    return Deployment(recording, outputs)


def stack_config(stack: str) -> dict[str, str]:
    """The `finetune-phi:*` values of Pulumi.<stack>.yaml, without the namespace."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return {
        key.removeprefix("finetune-phi:"): str(value)
        for key, value in (document.get("config") or {}).items()
    }
