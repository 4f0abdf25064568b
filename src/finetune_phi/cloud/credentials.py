"""Signing in to Azure: DefaultAzureCredential, and one clear line when there is nothing to
sign in with."""

from __future__ import annotations

SIGN_IN = (
    "no Azure credentials: run `az login` (or set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
    "AZURE_CLIENT_SECRET, or AZURE_FEDERATED_TOKEN_FILE for OIDC, for a service principal)"
)
