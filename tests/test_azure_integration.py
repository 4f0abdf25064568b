"""Opt-in: a real `pulumi up`, outputs check, purge and destroy of a throw-away stack.

Runs only with PHI_AZURE_TESTS=1, the Pulumi CLI on PATH, a subscription in
ARM_SUBSCRIPTION_ID and Azure credentials; otherwise it is skipped with the reason.
The stack has no GPU node running (min 0) and no deployment, so it costs cents.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.identity import DefaultAzureCredential
from pulumi import automation as auto

from finetune_phi.cloud.cleanup import Clients, cleanup
from finetune_phi.core.contract import OUTPUTS
from tests.support import ROOT

pytestmark = pytest.mark.azure


def _missing() -> list[str]:
    missing = []
    if os.environ.get("PHI_AZURE_TESTS") != "1":
        missing.append("opt-in PHI_AZURE_TESTS=1")
    if shutil.which("pulumi") is None:
        missing.append("the Pulumi CLI on PATH")
    if not os.environ.get("ARM_SUBSCRIPTION_ID"):
        missing.append("ARM_SUBSCRIPTION_ID")
    if not (os.environ.get("ARM_CLIENT_ID") or shutil.which("az")):
        missing.append(
            "Azure credentials (ARM_CLIENT_ID/ARM_CLIENT_SECRET/ARM_TENANT_ID or az login)"
        )
    return missing


@pytest.fixture
def throwaway_stack(tmp_path: Path) -> Iterator[auto.Stack]:
    if missing := _missing():
        pytest.skip(f"real Azure test needs: {', '.join(missing)}")

    env = {"PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", "")}
    if not os.environ.get("PULUMI_BACKEND_URL"):
        env["PULUMI_BACKEND_URL"] = f"file://{tmp_path}"
    name = f"it{secrets.token_hex(3)}"
    stack = auto.create_or_select_stack(
        stack_name=name,
        work_dir=str(ROOT),
        opts=auto.LocalWorkspaceOptions(env_vars=env),
    )
    stack.set_all_config(
        {
            "finetune-phi:environment": auto.ConfigValue(name),
            "finetune-phi:owner": auto.ConfigValue("integration-test"),
        }
    )
    try:
        yield stack
    finally:
        stack.workspace.remove_stack(name, force=True)


def test_up_exports_the_contract_then_purge_and_destroy(throwaway_stack: auto.Stack) -> None:
    result = throwaway_stack.up(on_output=print)
    outputs = {key: value.value for key, value in result.outputs.items()}
    try:
        assert set(outputs) == set(OUTPUTS)
        assert outputs["scoringUri"].startswith(f"https://{outputs['endpointName']}.")
        again = throwaway_stack.preview()
        assert set(again.change_summary) <= {"same"}, again.change_summary
    finally:
        credential = DefaultAzureCredential()

        def destroy() -> None:
            throwaway_stack.destroy(on_output=print)

        cleanup(
            outputs,
            purge=True,
            destroy=destroy,
            clients=Clients.signed_in(
                credential, outputs["subscriptionId"], outputs["resourceGroupName"]
            ),
        )
