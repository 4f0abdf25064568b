"""Signing in to Azure: DefaultAzureCredential, and one clear line when there is nothing to
sign in with."""

from __future__ import annotations

from collections.abc import Callable

from infra.arm import ARM_SCOPE
from jobs.errors import UsageError

SIGN_IN = (
    "no Azure credentials: run `az login` (or set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
    "AZURE_CLIENT_SECRET, or AZURE_FEDERATED_TOKEN_FILE for OIDC, for a service principal)"
)


def arm_token_provider() -> Callable[[], str]:
    """A function that returns a bearer token for Azure Resource Manager."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()

    def token() -> str:
        try:
            return str(credential.get_token(ARM_SCOPE).token)
        except ClientAuthenticationError:
            raise UsageError(SIGN_IN) from None

    return token
