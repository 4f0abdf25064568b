"""Azure ML compute clusters that scale to zero."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import machinelearningservices as ml

from finetune_phi.core.config import ClusterConfig
from finetune_phi.core.contract import PROJECT
from infra.components.identity import runs_as


@dataclass(frozen=True)
class ComputeClusterArgs:
    resource_group_name: pulumi.Input[str]
    """Resource group of the workspace."""
    workspace_name: pulumi.Input[str]
    """Workspace the cluster belongs to."""
    location: str
    """Azure region."""
    cluster_name: str
    """Name of the cluster (3-16 characters)."""
    cluster: ClusterConfig
    """VM size, node counts, idle time and priority."""
    identity_id: pulumi.Input[str]
    """User-assigned identity the nodes run as."""
    description: str
    """Shown in Azure ML studio."""
    tags: Mapping[str, str]
    """Tags for the cluster."""
    depends_on: Sequence[pulumi.Resource] = ()
    """Role assignments the nodes need before their first job."""
    managed_network: bool = False
    """The workspace has a managed virtual network: the nodes run in it, without public IPs."""


class ComputeCluster(pulumi.ComponentResource):
    """An AmlCompute cluster running as the user-assigned identity."""

    name: pulumi.Output[str]

    def __init__(
        self, name: str, args: ComputeClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(f"{PROJECT}:index:ComputeCluster", name, None, opts)
        spec = args.cluster
        compute = ml.Compute(
            f"{name}-compute",
            compute_name=args.cluster_name,
            resource_group_name=args.resource_group_name,
            workspace_name=args.workspace_name,
            location=args.location,
            tags=dict(args.tags),
            identity=runs_as(args.identity_id),
            properties=ml.AmlComputeArgs(
                compute_type="AmlCompute",
                description=args.description,
                disable_local_auth=True,
                properties=ml.AmlComputePropertiesArgs(
                    vm_size=spec.vm_size,
                    vm_priority=spec.priority,
                    os_type=ml.OsType.LINUX,
                    remote_login_port_public_access=ml.RemoteLoginPortPublicAccess.DISABLED,
                    # In a managed network a cluster takes no subnet (a custom-VNet one is not
                    # allowed) and may drop its public IPs (azure-ai-docs articles/machine-
                    # learning/how-to-managed-network-compute.md, ms.date 01/30/2025).
                    enable_node_public_ip=not args.managed_network,
                    scale_settings=ml.ScaleSettingsArgs(
                        min_node_count=spec.min_nodes,
                        max_node_count=spec.max_nodes,
                        node_idle_time_before_scale_down=f"PT{spec.idle_seconds}S",
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.depends_on),
                # Azure refuses to change a cluster's VM size or priority in place, and a cluster
                # made before the workspace's managed network has no path into it: it is made
                # again, which its public IP setting marks.
                replace_on_changes=[
                    "properties.properties.vmSize",
                    "properties.properties.vmPriority",
                    "properties.properties.enableNodePublicIp",
                ],
                delete_before_replace=True,
            ),
        )
        self.name = compute.name
        self.register_outputs({"name": self.name})
