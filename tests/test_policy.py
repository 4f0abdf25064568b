"""The CrossGuard pack (policy/): both example stacks pass it, and each rule fires.

The resources are the program's own, rendered under the Pulumi mocks with the inputs the
engine would send the pack. The pack itself is also started as the analyzer server Pulumi
runs (`python policy`) and spoken to over its gRPC protocol, as `pulumi preview` would.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

import grpc
import pulumi_azure_native
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, plugin_pb2
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)

from finetune_phi.core.azure_facts import VM_SIZES
from policy.policies import (
    COGNITIVE_ACCOUNT,
    COMPUTE,
    KEY_VAULT,
    ONLINE_ENDPOINT,
    POLICIES,
    REGISTRY,
    REQUIRED_TAGS,
    STACK_POLICIES,
    STORAGE_ACCOUNT,
    UNTAGGED_TYPES,
    WORKSPACE,
)
from tests import pulumi_harness
from tests.support import ROOT

DEV_CONFIG = json.loads((ROOT / "policy" / "dev.json").read_text())
PROD_CONFIG = json.loads((ROOT / "policy" / "prod.json").read_text())
ADVISORY = {
    "content-safety-in-stack",
    "key-vault-purge-protection",
    "workspace-public-network-disabled",
    "workspace-private-on-managed-network",
}
DEV_WARNINGS = {"key-vault-purge-protection", "workspace-public-network-disabled"}
"""The advisories dev's resources fire: its workspace is open, so its lack of a managed
network is no problem."""


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    urn: str
    props: dict[str, Any]


@cache
def rendered(stack: str, foundry: bool = False) -> tuple[Resource, ...]:
    """The stack's Azure resources with the inputs the engine would send the pack."""
    config = pulumi_harness.stack_config(stack)
    if foundry:
        config["foundry"] = "true"
    deployment = pulumi_harness.deploy(stack, config)
    return tuple(Resource(r.type, r.name, r.urn, r.inputs) for r in deployment.recording.custom)


def policy_named(name: str) -> ResourceValidationPolicy:
    return next(policy for policy in POLICIES if policy.name == name)


def level_config(stack_config: dict[str, Any], name: str) -> dict[str, Any]:
    """A policy's properties from a pack config file (the level left out)."""
    entry = stack_config.get(name)
    if not isinstance(entry, dict):
        return {}
    return {k: v for k, v in entry.items() if k != "enforcementLevel"}


def violations(
    policy: ResourceValidationPolicy, resource: Resource, config: dict[str, Any] | None = None
) -> list[str]:
    found: list[str] = []
    options = PolicyResourceOptions(False, [], False, [], PolicyCustomTimeouts(0, 0, 0), [])
    args = ResourceValidationArgs(
        resource.type, resource.props, resource.urn, resource.name, options, None, config or {}
    )

    def report(message: str, urn: str | None = None) -> None:
        found.append(message)

    policy.validate(args, report)
    return found


def pack_violations(
    resources: tuple[Resource, ...], pack_config: dict[str, Any]
) -> dict[str, list[str]]:
    """Every rule over every resource, in process: rule name -> messages."""
    return {
        policy.name: [
            message
            for resource in resources
            for message in violations(policy, resource, level_config(pack_config, policy.name))
        ]
        for policy in POLICIES
    }


@pytest.mark.parametrize(
    ("stack", "pack_config", "advisories"),
    [("dev", DEV_CONFIG, DEV_WARNINGS), ("prod", PROD_CONFIG, set())],
)
def test_example_stacks_pass_every_rule(
    stack: str, pack_config: dict[str, Any], advisories: set[str]
) -> None:
    fired = {
        name for name, messages in pack_violations(rendered(stack), pack_config).items() if messages
    }
    assert fired == advisories


def test_foundry_resources_pass_the_mandatory_rules() -> None:
    found = pack_violations(rendered("prod", foundry=True), PROD_CONFIG)
    assert {name for name, messages in found.items() if messages} == set()
    kinds = {r.props.get("kind") for r in rendered("prod", foundry=True) if r.type == WORKSPACE}
    assert kinds == {"Default", "Hub", "Project"}


def _retired_size() -> str:
    return next(
        name for name, size in VM_SIZES.items() if size.retired and size.retired <= date.today()
    )


def _cluster(props: dict[str, Any]) -> dict[str, Any]:
    cluster: dict[str, Any] = props["properties"]["properties"]
    return cluster


def _set(*path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(props: dict[str, Any]) -> None:
        for key in path[:-1]:
            props = props[key]
        props[path[-1]] = value

    return mutate


def _drop(*path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(props: dict[str, Any]) -> None:
        for key in path[:-1]:
            props = props[key]
        del props[path[-1]]

    return mutate


IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
SCALE = ("properties", "properties", "scaleSettings")
# rule, resource type, mutation of the dev stack's resource, what the message must say
MUTATIONS: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
    (
        "compute-scales-to-zero",
        COMPUTE,
        _set(*SCALE, "minNodeCount", value=1.0),
        "minNodeCount is 1.0",
    ),
    (
        "compute-scales-to-zero",
        COMPUTE,
        _set(*SCALE, "nodeIdleTimeBeforeScaleDown", value="PT1H"),
        "at most 900 seconds",
    ),
    ("compute-scales-to-zero", COMPUTE, _drop(*SCALE, "nodeIdleTimeBeforeScaleDown"), "is None"),
    (
        "no-retired-vm-sizes",
        COMPUTE,
        lambda p: _cluster(p).update(vmSize=_retired_size()),
        "retired by Azure",
    ),
    (  # Azure does not care about case
        "no-retired-vm-sizes",
        COMPUTE,
        lambda p: _cluster(p).update(vmSize=_retired_size().lower()),
        "retired by Azure",
    ),
    (
        "compute-local-auth-disabled",
        COMPUTE,
        _set("properties", "disableLocalAuth", value=False),
        "disableLocalAuth is False",
    ),
    (
        "compute-ssh-public-access-disabled",
        COMPUTE,
        _set("properties", "properties", "remoteLoginPortPublicAccess", value="Enabled"),
        "'Enabled'",
    ),
    (
        "compute-ssh-public-access-disabled",
        COMPUTE,
        _set("properties", "properties", "remoteLoginPortPublicAccess", value="NotSpecified"),
        "'NotSpecified'",
    ),
    (
        "storage-no-public-blob-access",
        STORAGE_ACCOUNT,
        _set("allowBlobPublicAccess", value=True),
        "allowBlobPublicAccess is True",
    ),
    (
        "storage-no-public-blob-access",
        STORAGE_ACCOUNT,
        _drop("allowBlobPublicAccess"),
        "allowBlobPublicAccess is None",
    ),
    (
        "storage-https-only",
        STORAGE_ACCOUNT,
        _set("enableHttpsTrafficOnly", value=False),
        "enableHttpsTrafficOnly is False",
    ),
    (
        "storage-minimum-tls-1-2",
        STORAGE_ACCOUNT,
        _set("minimumTlsVersion", value="TLS1_0"),
        "'TLS1_0'",
    ),
    (
        "key-vault-rbac",
        KEY_VAULT,
        _set("properties", "enableRbacAuthorization", value=False),
        "enableRbacAuthorization is False",
    ),
    ("registry-admin-user-disabled", REGISTRY, _set("adminUserEnabled", value=True), "admin user"),
    (
        "endpoint-auth-key-or-entra",
        ONLINE_ENDPOINT,
        _set("properties", "authMode", value="AMLToken"),
        "'AMLToken'",
    ),
    ("required-tags", STORAGE_ACCOUNT, _drop("tags", "cost-center"), "cost-center"),
    ("required-tags", COMPUTE, _set("tags", "owner", value=""), "owner"),
    ("required-tags", IDENTITY, _drop("tags"), ", ".join(REQUIRED_TAGS)),
    (
        "key-vault-purge-protection",
        KEY_VAULT,
        _drop("properties", "enablePurgeProtection"),
        "enablePurgeProtection is None",
    ),
    (
        "workspace-public-network-disabled",
        WORKSPACE,
        _set("publicNetworkAccess", value="Enabled"),
        "'Enabled'",
    ),
    (
        "workspace-private-on-managed-network",
        WORKSPACE,
        _set("managedNetwork", "isolationMode", value="Disabled"),
        "managedNetwork.isolationMode is 'Disabled' while publicNetworkAccess is 'Disabled'",
    ),
    (
        "workspace-private-on-managed-network",
        WORKSPACE,
        _drop("managedNetwork"),
        "managedNetwork.isolationMode is None",
    ),
    (
        "cognitive-services-local-auth-disabled",
        COGNITIVE_ACCOUNT,
        _set("properties", "disableLocalAuth", value=False),
        "disableLocalAuth is False",
    ),
    (
        "cognitive-services-local-auth-disabled",
        COGNITIVE_ACCOUNT,
        _drop("properties", "disableLocalAuth"),
        "disableLocalAuth is None",
    ),
]


def _one(stack: str, resource_type: str) -> Resource:
    return next(r for r in rendered(stack) if r.type == resource_type)


@pytest.mark.parametrize(
    ("rule", "resource_type", "mutate", "expected"),
    MUTATIONS,
    ids=[f"{rule}-{expected}" for rule, _, _, expected in MUTATIONS],
)
def test_each_rule_fires_on_a_mutated_resource(
    rule: str, resource_type: str, mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    # prod's resources pass every rule (advisories included), so only the mutation can fire
    original = _one("prod", resource_type)
    assert violations(policy_named(rule), original, level_config(PROD_CONFIG, rule)) == []
    props = copy.deepcopy(original.props)
    mutate(props)
    mutated = Resource(original.type, original.name, original.urn, props)
    found = violations(policy_named(rule), mutated, level_config(PROD_CONFIG, rule))
    assert len(found) == 1, found
    assert expected in found[0]
    assert found[0].startswith(f"{original.name}: ")


def test_every_rule_has_a_mutation_that_fires_it() -> None:
    assert {rule for rule, *_ in MUTATIONS} == {policy.name for policy in POLICIES}


def test_idle_limit_comes_from_the_pack_config() -> None:
    cluster = _one("prod", COMPUTE)  # idle 600 s
    rule = policy_named("compute-scales-to-zero")
    assert violations(rule, cluster, {"maxIdleSeconds": 600.0}) == []
    assert "at most 599 seconds" in violations(rule, cluster, {"maxIdleSeconds": 599.0})[0]


def test_rules_skip_what_they_do_not_govern() -> None:
    compute_instance = Resource(
        "azure-native:machinelearningservices:Compute",
        "notebook",
        "urn:notebook",
        {
            "properties": {
                "computeType": "ComputeInstance",
                "disableLocalAuth": True,
                "properties": {},
            },
            "tags": dict.fromkeys(REQUIRED_TAGS, "x"),
        },
    )
    for name in ("compute-scales-to-zero", "compute-ssh-public-access-disabled"):
        assert violations(policy_named(name), compute_instance) == []
    project = Resource(
        "azure-native:machinelearningservices:Workspace", "p", "urn:p", {"kind": "Project"}
    )
    assert violations(policy_named("workspace-public-network-disabled"), project) == []
    on_network = policy_named("workspace-private-on-managed-network")
    assert violations(on_network, project) == []
    # an open workspace (dev's) needs no managed network: its compute reaches it anyway
    dev_workspace = _one("dev", WORKSPACE)
    assert "managedNetwork" not in dev_workspace.props
    assert violations(on_network, dev_workspace) == []


def test_every_private_workspace_and_hub_of_prod_is_on_a_managed_network() -> None:
    """prod's workspace and Foundry hub are private and on the managed network; the rule
    would refuse either one without it."""
    rule = policy_named("workspace-private-on-managed-network")
    closed = [
        r
        for r in rendered("prod", foundry=True)
        if r.type == WORKSPACE and r.props.get("kind") != "Project"
    ]
    assert {r.props["kind"] for r in closed} == {"Default", "Hub"}
    for resource in closed:
        assert resource.props["publicNetworkAccess"] == "Disabled"
        assert violations(rule, resource) == []
        props = {k: v for k, v in resource.props.items() if k != "managedNetwork"}
        [problem] = violations(rule, Resource(resource.type, resource.name, resource.urn, props))
        assert "'AllowInternetOutbound' or 'AllowOnlyApprovedOutbound'" in problem


def test_a_retired_deployment_size_is_refused() -> None:
    deployment = Resource(
        "azure-native:machinelearningservices:OnlineDeployment",
        "blue",
        "urn:blue",
        {"properties": {"instanceType": _retired_size(), "endpointComputeType": "Managed"}},
    )
    assert "retired by Azure" in violations(policy_named("no-retired-vm-sizes"), deployment)[0]


def _takes_tags(resource_type: str) -> bool:
    _, module, name = resource_type.split(":")
    cls = getattr(getattr(pulumi_azure_native, module), name)
    return "tags" in inspect.signature(cls._internal_init).parameters


def test_untagged_types_are_exactly_those_without_tags_in_the_sdk() -> None:
    types = {r.type for r in rendered("dev", foundry=True)} | set(UNTAGGED_TYPES)
    assert {t for t in types if not _takes_tags(t)} == set(UNTAGGED_TYPES)


def test_every_built_in_in_the_facts_table_is_named_by_a_rule() -> None:
    from finetune_phi.core.azure_facts import POLICY_BUILTINS

    descriptions = " ".join(policy.description for policy in POLICIES)
    for key, builtin in POLICY_BUILTINS.items():
        assert f'"{builtin.display_name}" ({builtin.guid})' in descriptions, key


def test_every_rule_names_its_azure_policy_counterpart() -> None:
    """A built-in by its display name and GUID, or, where none exists, says so."""
    builtin = re.compile(
        r'Azure Policy built-in: "[^"]+" \([0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\)'
    )
    for policy in POLICIES:
        named = builtin.search(policy.description)
        assert named or "No Azure Policy built-in" in policy.description, policy.name


# --- the pack as Pulumi runs it: an analyzer server spoken to over gRPC ---


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "policy")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT / "policy",
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        server.terminate()
        server.wait(timeout=30)
        assert server.stderr is not None
        server.stderr.close()
        server.stdout.close()  # type: ignore[union-attr]


LEVELS = {
    "advisory": analyzer_pb2.ADVISORY,
    "mandatory": analyzer_pb2.MANDATORY,
    "disabled": analyzer_pb2.DISABLED,
}


def configure(stub: analyzer_pb2_grpc.AnalyzerStub, pack_config: dict[str, Any]) -> None:
    """What the CLI sends for `--policy-pack-config FILE` (the file's documented shape)."""
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    for name, entry in pack_config.items():
        # An entry without a level keeps the policy's own, as the CLI does.
        level = entry if isinstance(entry, str) else entry.get("enforcementLevel")
        if level is not None:
            request.policyConfig[name].enforcementLevel = LEVELS[level]
        if isinstance(entry, dict):
            request.policyConfig[name].properties.update(level_config(pack_config, name))
    stub.Configure(request)


def analyze(stub: analyzer_pb2_grpc.AnalyzerStub, resources: tuple[Resource, ...]) -> list[Any]:
    diagnostics: list[Any] = []
    for resource in resources:
        properties = struct_pb2.Struct()
        properties.update(resource.props)
        response = stub.Analyze(
            analyzer_pb2.AnalyzeRequest(
                type=resource.type, properties=properties, urn=resource.urn, name=resource.name
            )
        )
        diagnostics.extend(response.diagnostics)
    return diagnostics


def test_the_pack_serves_every_rule_at_its_level(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "finetune-phi"
    levels = {policy.name: policy.enforcementLevel for policy in info.policies}
    assert levels == {
        policy.name: analyzer_pb2.ADVISORY if policy.name in ADVISORY else analyzer_pb2.MANDATORY
        for policy in [*POLICIES, *STACK_POLICIES]
    }
    assert isinstance(analyzer.GetPluginInfo(empty_pb2.Empty()), plugin_pb2.PluginInfo)


def test_the_served_pack_warns_dev_and_passes_prod(
    analyzer: analyzer_pb2_grpc.AnalyzerStub,
) -> None:
    configure(analyzer, DEV_CONFIG)
    dev = analyze(analyzer, rendered("dev"))
    assert {d.policyName for d in dev} == DEV_WARNINGS
    assert {d.enforcementLevel for d in dev} == {analyzer_pb2.ADVISORY}

    configure(analyzer, PROD_CONFIG)
    assert analyze(analyzer, rendered("prod")) == []
    # with prod's config, dev's advisories become mandatory: `pulumi preview` would stop
    mandatory = analyze(analyzer, rendered("dev"))
    assert {d.policyName for d in mandatory} == DEV_WARNINGS
    assert {d.enforcementLevel for d in mandatory} == {analyzer_pb2.MANDATORY}


def test_the_served_pack_applies_the_configured_idle_limit(
    analyzer: analyzer_pb2_grpc.AnalyzerStub,
) -> None:
    configure(
        analyzer,
        {"compute-scales-to-zero": {"enforcementLevel": "mandatory", "maxIdleSeconds": 60}},
    )
    found = analyze(analyzer, (_one("dev", COMPUTE),))  # dev's clusters idle 120 s
    assert [d.policyName for d in found] == ["compute-scales-to-zero"]
    assert "at most 60 seconds" in found[0].message


@pytest.mark.parametrize(
    "command",
    [["-m", "policy", "--help"], ["-m", "policy", "-h"], [str(ROOT / "policy"), "--help"]],
    ids=["module-help", "module-h", "folder-help"],
)
def test_help_says_what_the_pack_is_and_never_waits_for_the_engine(command: list[str]) -> None:
    """`python -m policy --help` once started the analyzer server and waited for Pulumi
    forever; now it prints how the pack is run and exits at once."""
    result = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("usage: pulumi preview --policy-pack policy")
    assert "pulumi preview --policy-pack policy --policy-pack-config policy/prod.json" in (
        result.stdout
    )
    for policy in [*POLICIES, *STACK_POLICIES]:
        level = "advisory" if policy.name in ADVISORY else "mandatory"
        assert f"  {policy.name} ({level})\n" in result.stdout
    assert not result.stdout.strip().splitlines()[-1].isdigit()  # no analyzer port printed


# --- the stack rule: prod has a Content Safety account ---


def stack_violations(resources: tuple[Resource, ...], name: str) -> list[str]:
    policy = next(policy for policy in STACK_POLICIES if policy.name == name)
    options = PolicyResourceOptions(False, [], False, [], PolicyCustomTimeouts(0, 0, 0), [])
    args = StackValidationArgs(
        [
            PolicyResource(r.type, r.props, r.urn, r.name, options, None, None, [], {})
            for r in resources
        ]
    )
    found: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        found.append(message)

    policy.validate(args, report)
    return found


def test_prod_has_a_content_safety_account_with_local_auth_off() -> None:
    """Pulumi.prod.yaml turns contentSafety on; the stack rule passes it, and fails dev's stack
    (which prod's pack config would stop: the rule is mandatory there, disabled for dev)."""
    accounts = [r for r in rendered("prod") if r.type == COGNITIVE_ACCOUNT]
    assert [a.props["kind"] for a in accounts] == ["ContentSafety"]
    assert accounts[0].props["properties"]["disableLocalAuth"] is True
    assert stack_violations(rendered("prod"), "content-safety-in-stack") == []
    [problem] = stack_violations(rendered("dev"), "content-safety-in-stack")
    assert "pulumi config set contentSafety true" in problem
    assert PROD_CONFIG["content-safety-in-stack"] == "mandatory"
    assert DEV_CONFIG["content-safety-in-stack"] == "disabled"


def test_a_stack_without_the_account_kind_fails_the_stack_rule() -> None:
    """Another kind of Cognitive Services account is not Content Safety."""
    other = tuple(
        Resource(r.type, r.name, r.urn, {**r.props, "kind": "TextAnalytics"})
        if r.type == COGNITIVE_ACCOUNT
        else r
        for r in rendered("prod")
    )
    assert len(stack_violations(other, "content-safety-in-stack")) == 1


def test_the_served_pack_checks_the_stack_for_content_safety(
    analyzer: analyzer_pb2_grpc.AnalyzerStub,
) -> None:
    """As `pulumi preview` runs it: AnalyzeStack with every resource, at prod's level."""

    def analyze_stack(resources: tuple[Resource, ...]) -> list[Any]:
        request = analyzer_pb2.AnalyzeStackRequest()
        for resource in resources:
            entry = request.resources.add()
            entry.type, entry.urn, entry.name = resource.type, resource.urn, resource.name
            entry.properties.update(resource.props)
        return list(analyzer.AnalyzeStack(request).diagnostics)

    configure(analyzer, PROD_CONFIG)
    assert analyze_stack(rendered("prod")) == []
    [diagnostic] = analyze_stack(rendered("dev"))
    assert diagnostic.policyName == "content-safety-in-stack"
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    configure(analyzer, DEV_CONFIG)
    assert analyze_stack(rendered("dev")) == []
