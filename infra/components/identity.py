"""The user-assigned identity that the compute cluster and the endpoint run as."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, managedidentity
from pulumi_azure_native import machinelearningservices as ml

from finetune_phi.core.contract import PROJECT
from finetune_phi.core.roles import BuiltInRole, assignment_name


def runs_as(identity_id: pulumi.Input[str]) -> ml.ManagedServiceIdentityArgs:
    """The `identity` of an Azure ML compute or endpoint that runs as the given identity."""
    return ml.ManagedServiceIdentityArgs(
        type=ml.ManagedServiceIdentityType.USER_ASSIGNED, user_assigned_identities=[identity_id]
    )


@dataclass(frozen=True)
class RuntimeIdentityArgs:
    resource_group_name: pulumi.Input[str]
    """Resource group the identity is created in."""
    location: str
    """Azure region."""
    identity_name: str
    """Name of the user-assigned identity."""
    subscription_id: str
    """Subscription whose built-in role definitions are assigned."""
    resource_group_id: pulumi.Input[str]
    """Scope of the Contributor assignment."""
    storage_account_id: pulumi.Input[str]
    """Scope of the Storage Blob Data Reader assignment."""
    container_registry_id: pulumi.Input[str]
    """Scope of the AcrPull assignment."""
    tags: Mapping[str, str]
    """Tags for the identity (role assignments take none)."""


class RuntimeIdentity(pulumi.ComponentResource):
    """A user-assigned identity and exactly the three roles the jobs and endpoint need.

    Nothing is granted to a user-assigned identity automatically: without AcrPull a
    deployment cannot pull its image, without Blob Reader it cannot read its model.
    """

    resource_id: pulumi.Output[str]
    client_id: pulumi.Output[str]
    principal_id: pulumi.Output[str]
    contributor: authorization.RoleAssignment
    blob_reader: authorization.RoleAssignment
    acr_pull: authorization.RoleAssignment

    def __init__(
        self, name: str, args: RuntimeIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(f"{PROJECT}:index:RuntimeIdentity", name, None, opts)
        identity = managedidentity.UserAssignedIdentity(
            f"{name}-identity",
            resource_name_=args.identity_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )

        def grant(
            suffix: str, role: BuiltInRole, scope: pulumi.Input[str]
        ) -> authorization.RoleAssignment:
            return authorization.RoleAssignment(
                f"{name}-{suffix}",
                role_assignment_name=pulumi.Output.all(scope, identity.principal_id).apply(
                    lambda values: assignment_name(values[0], role, values[1])
                ),
                scope=scope,
                role_definition_id=role.definition_id(args.subscription_id),
                principal_id=identity.principal_id,
                # Without it a brand-new identity fails with PrincipalNotFound while the
                # directory replicates.
                principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.contributor = grant("contributor", BuiltInRole.CONTRIBUTOR, args.resource_group_id)
        self.blob_reader = grant(
            "blob-reader", BuiltInRole.STORAGE_BLOB_DATA_READER, args.storage_account_id
        )
        self.acr_pull = grant("acr-pull", BuiltInRole.ACR_PULL, args.container_registry_id)

        self.resource_id = identity.id
        self.client_id = identity.client_id
        self.principal_id = identity.principal_id
        self.register_outputs(
            {
                "resource_id": self.resource_id,
                "client_id": self.client_id,
                "principal_id": self.principal_id,
            }
        )
