"""Azure naming rules and the names a stack derives from its prefix and environment.

Globally unique names (storage, key vault, registry) and the endpoint name (part of its
public URL) end in a short suffix hashed from subscription, resource group and stack: stable
for a stack, so re-running `pulumi up` changes nothing, and different between stacks, so two
environments never collide. It is never random per run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

SUFFIX_LENGTH = 6
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class NameRule:
    """One Azure naming rule, stated the way an error message should state it."""

    min_length: int
    max_length: int
    pattern: str
    description: str
    single_hyphens: bool = False

    def violation(self, name: str) -> str | None:
        """Why `name` breaks this rule, or None when it is valid."""
        if not self.min_length <= len(name) <= self.max_length:
            return (
                f"must be {self.min_length}-{self.max_length} characters "
                f"(is {len(name)}); {self.description}"
            )
        if re.fullmatch(self.pattern, name) is None or (self.single_hyphens and "--" in name):
            return self.description
        return None


RULES: dict[str, NameRule] = {
    "resourceGroupName": NameRule(
        1, 90, r"[\w.()-]*[\w()-]", "letters, digits, '_', '-', '.', '(', ')'; not ending in '.'"
    ),
    "storageAccountName": NameRule(3, 24, r"[a-z0-9]+", "lowercase letters and digits only"),
    "keyVaultName": NameRule(
        3,
        24,
        r"[a-zA-Z](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?",
        "letters, digits and single hyphens, starting with a letter, not ending in a hyphen",
        single_hyphens=True,
    ),
    "containerRegistryName": NameRule(5, 50, r"[a-zA-Z0-9]+", "letters and digits only"),
    "logAnalyticsName": NameRule(
        4,
        63,
        r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?",
        "letters, digits and hyphens, starting and ending with a letter or digit",
    ),
    "applicationInsightsName": NameRule(
        1, 255, r"[\w.()-]*[\w()-]", "letters, digits, '_', '-', '.', '(', ')'; not ending in '.'"
    ),
    "workspaceName": NameRule(
        3,
        33,
        r"[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}",
        "letters, digits, '_' and '-', starting with a letter or digit",
    ),
    "identityName": NameRule(
        3,
        128,
        r"[a-zA-Z0-9][a-zA-Z0-9_-]*",
        "letters, digits, '_' and '-', starting with a letter or digit",
    ),
    "gpuComputeName": NameRule(
        3,
        16,
        r"[a-zA-Z][a-zA-Z0-9-]*[a-zA-Z0-9]",
        "letters, digits and hyphens, starting with a letter, not ending in a hyphen",
    ),
    "endpointName": NameRule(
        3,
        32,
        r"[a-zA-Z](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?",
        "letters, digits and single hyphens, starting with a letter, not ending in a hyphen",
        single_hyphens=True,
    ),
}
RULES["cpuComputeName"] = RULES["gpuComputeName"]
RULES["foundryHubName"] = RULES["foundryProjectName"] = RULES["workspaceName"]


def stable_suffix(subscription_id: str, resource_group: str, stack: str) -> str:
    """Six base-36 characters hashed from what makes a stack's environment unique."""
    digest = hashlib.sha256(f"{subscription_id}/{resource_group}/{stack}".lower().encode())
    number = int.from_bytes(digest.digest()[:8], "big")
    chars = []
    for _ in range(SUFFIX_LENGTH):
        number, remainder = divmod(number, 36)
        chars.append(_BASE36[remainder])
    return "".join(chars)


def resource_group_name(prefix: str, environment: str) -> str:
    return f"rg-{prefix}-{environment}"


def derived_names(prefix: str, environment: str, suffix: str) -> dict[str, str]:
    """Default name of every resource but the resource group, keyed by its config key.

    With a valid prefix (at most 10 characters) and environment (at most 10), every
    name fits its rule; the truncations keep the suffix, which carries the uniqueness.
    """
    compact = f"{prefix}{environment}"
    return {
        "storageAccountName": f"st{compact[:16]}{suffix}",
        "keyVaultName": f"kv-{compact[:14]}-{suffix}",
        "containerRegistryName": f"cr{compact}{suffix}",
        "logAnalyticsName": f"log-{prefix}-{environment}",
        "applicationInsightsName": f"appi-{prefix}-{environment}",
        "workspaceName": f"mlw-{prefix}-{environment}",
        "identityName": f"id-{prefix}-{environment}",
        "gpuComputeName": f"gpu-{compact[:12]}",
        "cpuComputeName": f"cpu-{compact[:12]}",
        "endpointName": f"{prefix}-{environment}-{suffix}",
        "foundryHubName": f"hub-{prefix}-{environment}",
        "foundryProjectName": f"proj-{prefix}-{environment}",
    }
