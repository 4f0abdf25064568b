"""Azure ML's managed virtual network: where a workspace's (or a Foundry hub's) compute runs.

A workspace closed to public networks is reached through a private endpoint, and Azure ML
says compute outside that endpoint's network "will not work" (azure-ai-docs
articles/machine-learning/how-to-configure-private-link.md, ms.date 09/05/2024). The managed
virtual network puts the clusters and the online endpoint's deployments inside Azure's own
network for the workspace, with private endpoints to the workspace and its storage, key vault
and registry; no subnet of ours is involved (a custom-VNet subnet is not allowed there).

Facts (azure-ai-docs articles/machine-learning/how-to-managed-network.md, ms.date 05/23/2025):

- modes: Disabled, AllowInternetOutbound, AllowOnlyApprovedOutbound. Once on, the network
  cannot be turned off, and AllowOnlyApprovedOutbound cannot go back to AllowInternetOutbound;
- the network is built with the first compute, or at once with `provisionNetworkNow` (a
  preview flag): about 30 minutes either way, plus about 10 for the first FQDN rule. A first
  compute that also builds the network can time out, and an online deployment needs the
  network provisioned first, so the stack provisions it with the workspace;
- clusters and endpoints that existed before the network have no migration path: they are
  deleted and created again (how-to-managed-network-compute.md, ms.date 01/30/2025);
- in AllowOnlyApprovedOutbound, FQDN rules are implemented by an Azure Firewall (Standard
  unless told otherwise), billed while it exists; in AllowInternetOutbound they are refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from pulumi_azure_native import machinelearningservices as ml

PACKAGE_HOSTS: Mapping[str, str] = {
    "pypi": "pypi.org",
    "pypi-files": "*.pythonhosted.org",
    "anaconda": "anaconda.com",
    "anaconda-hosts": "*.anaconda.com",
    "anaconda-org": "*.anaconda.org",
}
"""Rule name -> host for pip and conda: image builds on compute inside the network, and the
Foundry flows' compute sessions installing a flow's requirements.txt. Azure ML's list for
"Access public machine learning packages" (azure-ai-docs articles/machine-learning/includes/
recommended-network-outbound.md, ms.date 06/12/2023), without its PyTorch and TensorFlow hosts:
the locked torch wheel comes from PyPI."""

HUGGING_FACE_HOSTS: Mapping[str, str] = {
    "huggingface": "huggingface.co",
    "huggingface-hosts": "*.huggingface.co",
    "huggingface-cdn": "*.hf.co",
}
"""Rule name -> host for the fine-tune job, which downloads its base model from the Hugging
Face Hub at run time: the Hub, and the LFS, Xet and CDN hosts its downloads are redirected to
(cdn-lfs.hf.co, transfer.xethub.hf.co, *.aws.cdn.hf.co: https://huggingface.co/.well-known/
meta.json, checked 2026-12-05; azure-ai-docs "Scenario: Use HuggingFace models" names
cdn-lfs.huggingface.co)."""

FIREWALL_SKU = ml.FirewallSku.STANDARD
"""Azure's default for FQDN rules, stated so the bill is not left to a default; Basic is a
preview choice in the same article."""


def managed_network(
    isolation_mode: str, approved_hosts: Mapping[str, str]
) -> ml.ManagedNetworkSettingsArgs | None:
    """The `managedNetwork` of a workspace or hub, or None to send none (mode Disabled).

    `approved_hosts` (rule name -> FQDN) become FQDN outbound rules in AllowOnlyApprovedOutbound
    only: Azure refuses them in AllowInternetOutbound, where every host is reachable anyway.
    """
    if isolation_mode == ml.IsolationMode.DISABLED:
        return None
    if isolation_mode != ml.IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND:
        return ml.ManagedNetworkSettingsArgs(isolation_mode=isolation_mode)
    rules: dict[str, ml.FqdnOutboundRuleArgs] = {
        name: ml.FqdnOutboundRuleArgs(
            type="FQDN", category=ml.RuleCategory.USER_DEFINED, destination=host
        )
        for name, host in approved_hosts.items()
    }
    return ml.ManagedNetworkSettingsArgs(
        isolation_mode=isolation_mode, outbound_rules=rules, firewall_sku=FIREWALL_SKU
    )
