"""Pulumi entry point: validate the stack's config, declare the environment, export outputs."""

import pulumi
from pulumi_azure_native import authorization

from infra.config import load
from infra.stack import build

client = authorization.get_client_config()
for key, value in build(load(client.subscription_id), client).items():
    pulumi.export(key, value)
