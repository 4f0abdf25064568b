"""Pulumi entry point: validate the stack's config, declare the environment, export outputs."""

import sys
from pathlib import Path

import pulumi
from pulumi_azure_native import authorization

from finetune_phi.core.config import load

# Pulumi runs this folder as a script (`main: infra/`); its modules import one another as
# the `infra` package, as the tests import them, so the project root goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from infra.stack import build

client = authorization.get_client_config()
for key, value in build(load(client.subscription_id), client).items():
    pulumi.export(key, value)
