"""Built-in Azure role definitions and deterministic role-assignment names."""

from __future__ import annotations

import uuid
from enum import Enum

from finetune_phi.core import azure_facts


class BuiltInRole(Enum):
    """Built-in role definition ids, the same in every subscription."""

    CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
    STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
    ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
    COGNITIVE_SERVICES_USER = azure_facts.COGNITIVE_SERVICES_USER

    def definition_id(self, subscription_id: str) -> str:
        return (
            f"/subscriptions/{subscription_id}/providers/"
            f"Microsoft.Authorization/roleDefinitions/{self.value}"
        )


# A fixed namespace: the same scope, role and principal always give the same GUID.
_ASSIGNMENT_NAMESPACE = uuid.UUID("5d0f4b0e-3f0c-4a53-9d43-2f8a1c6e9b71")


def assignment_name(scope: str, role: BuiltInRole, principal_id: str) -> str:
    """The role assignment's GUID name.

    A random name would create a second assignment on every replacement and fail with
    409 RoleAssignmentExists; this one is stable for the same scope, role and principal.
    """
    return str(uuid.uuid5(_ASSIGNMENT_NAMESPACE, f"{scope.lower()}|{role.value}|{principal_id}"))
