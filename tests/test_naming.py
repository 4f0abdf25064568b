"""Names: stable per stack, different between stacks, within Azure's rules."""

from __future__ import annotations

import uuid

import pytest

from finetune_phi.core.config import parse
from finetune_phi.core.naming import RULES, stable_suffix
from finetune_phi.core.roles import BuiltInRole, assignment_name

SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"


def test_suffix_is_stable_for_a_stack_and_differs_between_stacks() -> None:
    dev = stable_suffix(SUB_A, "rg-phi-dev", "dev")
    assert dev == stable_suffix(SUB_A, "rg-phi-dev", "dev")
    others = {
        stable_suffix(SUB_A, "rg-phi-dev", "prod"),
        stable_suffix(SUB_B, "rg-phi-dev", "dev"),
        stable_suffix(SUB_A, "rg-phi-other", "dev"),
    }
    assert dev not in others
    assert len(others) == 3
    assert len(dev) == 6
    assert dev.isalnum()
    assert dev == dev.lower()


def test_two_stacks_never_share_a_globally_unique_name() -> None:
    dev = parse({}, stack="dev", subscription_id=SUB_A).names
    prod = parse({}, stack="prod", subscription_id=SUB_A).names
    for field in ("storage_account", "key_vault", "container_registry", "endpoint"):
        assert getattr(dev, field) != getattr(prod, field)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("storageAccountName", "UPPERCASE"),
        ("storageAccountName", "st"),
        ("keyVaultName", "-kv"),
        ("keyVaultName", "kv-"),
        ("containerRegistryName", "cr-with-hyphens"),
        ("workspaceName", "_ws"),
        ("gpuComputeName", "gpu-"),
        ("endpointName", "ep--x"),
    ],
)
def test_rules_reject_what_azure_rejects(key: str, name: str) -> None:
    assert RULES[key].violation(name) is not None


def test_role_assignment_names_are_deterministic_guids() -> None:
    scope = "/subscriptions/s/resourceGroups/rg"
    first = assignment_name(scope, BuiltInRole.CONTRIBUTOR, "principal")
    assert first == assignment_name(scope.upper(), BuiltInRole.CONTRIBUTOR, "principal")
    assert uuid.UUID(first).version == 5
    assert first != assignment_name(scope, BuiltInRole.ACR_PULL, "principal")
    assert first != assignment_name(scope, BuiltInRole.CONTRIBUTOR, "other")
