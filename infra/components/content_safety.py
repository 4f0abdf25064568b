"""The optional Azure AI Content Safety account that screens training data (`phi data screen`).

Local authentication (keys) is off: callers sign in with Entra ID, which needs the account's
custom subdomain (azure-docs includes/cognitive-services-azure-active-directory-authentication.md,
ms.date 08/24/2022: "Azure AD authentication always needs to be used together with custom
subdomain name"). The runtime identity and the deploying user get Cognitive Services User on
the account, the role Content Safety's overview names for Entra ID callers (azure-ai-docs
articles/ai-services/content-safety/overview.md, ms.date 09/16/2025).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, cognitiveservices

from finetune_phi.core.contract import PROJECT
from finetune_phi.core.roles import BuiltInRole, assignment_name


@dataclass(frozen=True)
class ContentSafetyArgs:
    resource_group_name: pulumi.Input[str]
    """Resource group of the account."""
    location: str
    """Azure region; one that offers text analysis (checked by the config)."""
    account_name: str
    """Account name, also its custom subdomain (unique in all Azure)."""
    sku: str
    """S0 or F0."""
    subscription_id: str
    """Subscription whose built-in role definition is assigned."""
    runtime_principal_id: pulumi.Input[str]
    """The user-assigned identity's principal: jobs and endpoint call the service as it."""
    deployer_principal_id: str
    """The Pulumi caller's object id (`authorization.get_client_config().object_id`)."""
    deployer_principal_type: str
    """User or ServicePrincipal (`deployerPrincipalType`): the provider sends User when unset."""
    tags: Mapping[str, str]
    """Tags for the account (role assignments take none)."""


class ContentSafety(pulumi.ComponentResource):
    """A Content Safety account with keys off and the role its callers need."""

    name: pulumi.Output[str]
    resource_id: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    runtime_user: authorization.RoleAssignment
    deployer_user: authorization.RoleAssignment

    def __init__(
        self, name: str, args: ContentSafetyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(f"{PROJECT}:index:ContentSafety", name, None, opts)
        account = cognitiveservices.Account(
            f"{name}-account",
            account_name=args.account_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            kind="ContentSafety",
            sku=cognitiveservices.SkuArgs(name=args.sku),
            identity=cognitiveservices.IdentityArgs(
                type=cognitiveservices.ResourceIdentityType.SYSTEM_ASSIGNED
            ),
            properties=cognitiveservices.AccountPropertiesArgs(
                custom_sub_domain_name=args.account_name,
                disable_local_auth=True,
                public_network_access=cognitiveservices.PublicNetworkAccess.ENABLED,
            ),
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        user = BuiltInRole.COGNITIVE_SERVICES_USER

        def grant(
            suffix: str, principal: pulumi.Input[str], principal_type: str
        ) -> authorization.RoleAssignment:
            return authorization.RoleAssignment(
                f"{name}-{suffix}",
                role_assignment_name=pulumi.Output.all(account.id, principal).apply(
                    lambda values: assignment_name(values[0], user, values[1])
                ),
                scope=account.id,
                role_definition_id=user.definition_id(args.subscription_id),
                principal_id=principal,
                # Stated for both: a brand-new identity fails with PrincipalNotFound without
                # it, and the provider sends "User" when it is left out, which ARM refuses
                # for CI's service principal.
                principal_type=principal_type,
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.runtime_user = grant("runtime-user", args.runtime_principal_id, "ServicePrincipal")
        self.deployer_user = grant(
            "deployer-user", args.deployer_principal_id, args.deployer_principal_type
        )
        self.name = account.name
        self.resource_id = account.id
        self.endpoint = account.properties.endpoint
        self.register_outputs(
            {"name": self.name, "resource_id": self.resource_id, "endpoint": self.endpoint}
        )
