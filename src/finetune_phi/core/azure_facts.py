"""Facts about Azure that change on Microsoft's schedule, in one table, each with its public
source and the date it was checked: VM sizes, catalog models, base images, API versions,
the Azure Policy built-ins the policy pack mirrors, and Azure AI Content Safety's contract,
limits, regions, role and price meter.

Every command and the stack's config validation refuse a retired choice before anything is
sent, naming the date and the replacement (`retirement_problem`). `tests/test_azure_facts.py`
fails when a default this repository ships has passed its retirement date, so the table
cannot rot silently. Re-check a row against its source before relying on it, and update its
date when you do. This module imports nothing outside the standard library, so the Pulumi
program and `phi` both read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

CHECKED = date(2026, 11, 21)
"""When every row below was last checked against its source."""

_COMPUTE_DOCS = "MicrosoftDocs/azure-compute-docs articles/virtual-machines/sizes/gpu-accelerated/"
"""Each size page below is a file listed there (read 2026-12-05)."""
REGIONS = frozenset(
    [
        "australiacentral",
        "australiacentral2",
        "australiaeast",
        "australiasoutheast",
        "austriaeast",
        "belgiumcentral",
        "brazilsouth",
        "brazilsoutheast",
        "canadacentral",
        "canadaeast",
        "centralindia",
        "centralus",
        "chilecentral",
        "denmarkeast",
        "eastasia",
        "eastus",
        "eastus2",
        "francecentral",
        "francesouth",
        "germanynorth",
        "germanywestcentral",
        "indonesiacentral",
        "israelcentral",
        "italynorth",
        "japaneast",
        "japanwest",
        "koreacentral",
        "koreasouth",
        "malaysiawest",
        "mexicocentral",
        "newzealandnorth",
        "northcentralus",
        "northeurope",
        "norwayeast",
        "norwaywest",
        "polandcentral",
        "qatarcentral",
        "southafricanorth",
        "southafricawest",
        "southcentralus",
        "southindia",
        "southeastasia",
        "spaincentral",
        "swedencentral",
        "switzerlandnorth",
        "switzerlandwest",
        "uaecentral",
        "uaenorth",
        "uksouth",
        "ukwest",
        "westcentralus",
        "westeurope",
        "westindia",
        "westus",
        "westus2",
        "westus3",
    ]
)
"""Public Azure regions' programmatic names: MicrosoftDocs/reliability-docs
articles/reliability/regions-list.md (09/23/2025). A newer region is allowed with the stack
key `extraRegions`."""

_SKU_LIST = (
    "MicrosoftDocs/azure-ai-docs articles/machine-learning/"
    "reference-managed-online-endpoints-vm-sku-list.md (ms.date 10/18/2025, read 2026-12-05)"
)
SKIPS_RESERVATION = frozenset(
    [
        "Standard_NC24ads_A100_v4",
        "Standard_NC48ads_A100_v4",
        "Standard_NC96ads_A100_v4",
        "Standard_NC40ads_H100_v5",
        "Standard_NC80adis_H100_v5",
        "Standard_ND96amsr_A100_v4",
        "Standard_ND96asr_v4",
        "Standard_ND40rs_v2",
        "Standard_ND96is_H100_v5",
        "Standard_ND96isr_H100_v5",
    ]
)
"""Every size `_SKU_LIST` marks "Skip 20% Reservation": a managed online deployment on one
needs exactly its vCPUs of quota. Every other size needs `ceil(1.2 x instances) x vCPUs`
(MicrosoftDocs/azure-ai-docs articles/machine-learning/includes/
quota-allocation-online-deployment.md, ms.date 12/07/2023; how-to-manage-quotas.md, ms.date
01/27/2026; both read 2026-12-05). `VmSize.skips_reservation` agrees with this set (a test
holds it to it)."""
QUOTA_REQUEST = (
    "https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas#vm-quota-increases"
)
"""How to ask for more Azure ML vCPU quota (workspace > Usage + quotas, select the VM family,
Submit): MicrosoftDocs/azure-ai-docs articles/machine-learning/how-to-manage-quotas.md,
section "VM quota increases" (ms.date 01/27/2026, read 2026-12-05)."""
_RETIRED_SIZES = (
    "MicrosoftDocs/azure-compute-docs articles/virtual-machines/sizes/retirement/"
    "retired-sizes-list.md (06/13/2025; file read 2026-12-05)"
)


@dataclass(frozen=True)
class VmSize:
    name: str
    family: str
    """The quota family Azure ML's usage API counts the size's vCPUs against."""
    vcpus: int
    gpus: int
    gpu: str
    """GPU model, '' for a CPU size."""
    gpu_memory_gb: int
    """Per GPU."""
    bf16: bool
    """Native bfloat16 (compute capability 8.0 or newer: Ampere, Hopper)."""
    source: str
    retired: date | None = None
    replacement: str = ""
    skips_reservation: bool = False
    """Managed online deployments reserve 20 % extra vCPUs of quota, except on these sizes."""


def _t4(name: str, vcpus: int, gpus: int) -> VmSize:
    return VmSize(
        name,
        "standardNCASv3_T4Family",
        vcpus,
        gpus,
        "T4",
        16,
        False,
        f"{_COMPUTE_DOCS}ncast4v3-series.md; {_SKU_LIST}",
    )


def _a100(name: str, vcpus: int, gpus: int) -> VmSize:
    return VmSize(
        name,
        "standardNCADSA100v4Family",
        vcpus,
        gpus,
        "A100 80GB",
        80,
        True,
        f"{_COMPUTE_DOCS}nca100v4-series.md (ms.date 07/31/2024); {_SKU_LIST}",
        skips_reservation=True,
    )


def _v100_retired(name: str, vcpus: int, gpus: int) -> VmSize:
    return VmSize(
        name,
        "standardNCSv3Family",
        vcpus,
        gpus,
        "V100",
        16,
        False,
        "MicrosoftDocs/azure-compute-docs articles/virtual-machines/ncv3-retirement.md "
        f"(05/28/2025; file read 2026-12-05); {_RETIRED_SIZES}",
        retired=date(2025, 9, 30),
        replacement="Standard_NC24ads_A100_v4 (training) or Standard_NC4as_T4_v3 (serving)",
    )


def _esv3(name: str, vcpus: int) -> VmSize:
    return VmSize(
        name,
        "standardESv3Family",
        vcpus,
        0,
        "",
        0,
        False,
        "MicrosoftDocs/azure-docs articles/virtual-machines/ev3-esv3-series.md; "
        f"not in {_RETIRED_SIZES}",
    )


VM_SIZES: dict[str, VmSize] = {
    size.name: size
    for size in (
        _t4("Standard_NC4as_T4_v3", 4, 1),
        _t4("Standard_NC8as_T4_v3", 8, 1),
        _t4("Standard_NC16as_T4_v3", 16, 1),
        _t4("Standard_NC64as_T4_v3", 64, 4),
        _a100("Standard_NC24ads_A100_v4", 24, 1),
        _a100("Standard_NC48ads_A100_v4", 48, 2),
        _a100("Standard_NC96ads_A100_v4", 96, 4),
        VmSize("Standard_NC40ads_H100_v5", "standardNCADSH100v5Family", 40, 1, "H100 NVL", 94,
               True, f"{_COMPUTE_DOCS}ncadsh100v5-series.md; {_SKU_LIST}", skips_reservation=True),
        VmSize("Standard_NC80adis_H100_v5", "standardNCADSH100v5Family", 80, 2, "H100 NVL", 94,
               True, f"{_COMPUTE_DOCS}ncadsh100v5-series.md; {_SKU_LIST}", skips_reservation=True),
        VmSize("Standard_ND96amsr_A100_v4", "standardNDAMSv4_A100Family", 96, 8, "A100 80GB", 80,
               True, f"{_COMPUTE_DOCS}ndma100v4-series.md (ms.date 07/31/2024); {_SKU_LIST}",
               skips_reservation=True),
        VmSize("Standard_NV36ads_A10_v5", "standardNVADSA10v5Family", 36, 1, "A10", 24, True,
               f"{_COMPUTE_DOCS}nvadsa10v5-series.md; {_SKU_LIST}"),
        _v100_retired("Standard_NC6s_v3", 6, 1),
        _v100_retired("Standard_NC12s_v3", 12, 2),
        _v100_retired("Standard_NC24s_v3", 24, 4),
        _v100_retired("Standard_NC24rs_v3", 24, 4),
        _esv3("Standard_E4s_v3", 4),
        _esv3("Standard_E8s_v3", 8),
        _esv3("Standard_E16s_v3", 16),
        _esv3("Standard_E32s_v3", 32),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Model:
    hub_id: str
    """Hugging Face id: what the custom path fine-tunes."""
    registry_name: str
    """Asset name in Azure's `azureml` registry: what the catalog and serverless paths use."""
    catalog_finetune: bool
    """The catalog's chat-completion pipeline fine-tunes it on your own cluster."""
    serverless_regions: tuple[str, ...]
    """Regions whose hub-based projects offer serverless (pay-as-you-go) fine-tuning."""
    source: str
    retired: date | None = None
    """When Azure's catalog retired fine-tuning and inference of it (the hub copy stays)."""
    replacement: str = ""
    catalog_computes: tuple[str, ...] = ()
    """The VM sizes its registry spec lists for fine-tuning (empty: the spec lists none)."""
    catalog_defaults: tuple[tuple[str, object], ...] = ()
    """Its registry spec's fine-tuning defaults, as the catalog pipeline's inputs."""


_LIFECYCLE = (
    "MicrosoftDocs/azure-ai-docs articles/foundry/openai/includes/"
    "concepts-model-retirement-schedule-content.md (ms.date 07/07/2026, read 2026-12-05; the "
    "table moved there from ai-foundry/concepts/model-lifecycle-retirement.md); "
    "Azure/azureml-assets assets/models/system/phi-3.5-mini-128k-instruct/spec.yaml"
)
_PHI4_REGIONS = ("eastus2", "eastus", "northcentralus", "southcentralus", "westus", "westus3")
_MAAS = (
    "MicrosoftDocs/azure-ai-docs articles/foundry-classic/includes/region-availability-maas.md "
    "(ms.date 02/17/2026, read 2026-12-05; formerly under ai-foundry/includes); "
    "Azure/azureml-examples sdk/python/jobs/finetuning/standalone/"
    "model-as-a-service/chat-completion/chat_completion_with_model_as_service.ipynb"
)

_PHI4_SPEC = (
    "Azure/azureml-assets assets/models/system/Phi-4/spec.yaml (version 8, commit 72891e1, "
    "2026-07-01): fineTuningTasks chat-completion, finetuneComputes, model_specific_defaults "
    "(apply_deepspeed, deepspeed_stage 3, apply_lora, learning_rate 5e-6, cosine)"
)

MODELS: dict[str, Model] = {
    model.registry_name: model
    for model in (
        Model("microsoft/Phi-3-mini-4k-instruct", "Phi-3-mini-4k-instruct", True, (), _LIFECYCLE,
              retired=date(2025, 8, 30), replacement="Phi-4-mini-instruct"),
        Model("microsoft/Phi-3-mini-128k-instruct", "Phi-3-mini-128k-instruct", True, (),
              _LIFECYCLE, retired=date(2025, 8, 30), replacement="Phi-4-mini-instruct"),
        Model("microsoft/Phi-3.5-mini-instruct", "Phi-3.5-mini-instruct", True, (), _LIFECYCLE,
              retired=date(2025, 8, 30), replacement="Phi-4-mini-instruct"),
        Model("microsoft/Phi-3-medium-4k-instruct", "Phi-3-medium-4k-instruct", True, (),
              _LIFECYCLE, retired=date(2025, 8, 30), replacement="Phi-4"),
        # Catalog fine-tuning of Phi-4-mini: the azureml-examples chat-completion notebook's
        # pipeline, as public labs run it; not checked against the live registry.
        Model("microsoft/Phi-4-mini-instruct", "Phi-4-mini-instruct", True, _PHI4_REGIONS,
              f"{_MAAS}; Azure/azureml-examples sdk/python/foundation-models/system/finetune/"
              "chat-completion/chat-completion.ipynb"),
        Model("microsoft/phi-4", "Phi-4", True, _PHI4_REGIONS, f"{_MAAS}; {_PHI4_SPEC}",
              catalog_computes=(
                  "Standard_NC24ads_A100_v4", "Standard_NC48ads_A100_v4",
                  "Standard_NC96ads_A100_v4", "Standard_ND96asr_v4", "Standard_ND96amsr_A100_v4",
                  "Standard_NC40ads_H100_v5", "Standard_NC80adis_H100_v5",
                  "Standard_ND96isr_H100_v5",
              ),
              catalog_defaults=(("apply_deepspeed", True), ("learning_rate", 5e-6),
                                ("lr_scheduler_type", "cosine"))),
    )
}  # fmt: skip


@dataclass(frozen=True)
class BaseImage:
    name: str
    tag: str
    cuda: str
    source: str
    deprecated: date | None = None
    replacement: str = ""

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def tags_url(self) -> str:
        """Where MCR lists the image's tags, newest fixes included (`_CONTAINERS`)."""
        return (
            f"https://mcr.microsoft.com/v2/{self.name.removeprefix('mcr.microsoft.com/')}/tags/list"
        )


_CONTAINERS = (
    "Azure/AzureML-Containers README.md, supported images (commit 7482fea, 2026-03-16; the "
    "same commit deleted the per-image release notes: tags are listed by MCR at "
    "https://mcr.microsoft.com/v2/azureml/<image>/tags/list; read 2026-12-05)"
)
_ASSETS_PINS = (
    "Azure/azureml-assets branch release (commit 61470ae, 2026-07-23), environment "
    "Dockerfiles pinned by its pinning utility: "
)
BASE_IMAGES: dict[str, BaseImage] = {
    image.name: image
    for image in (
        BaseImage("mcr.microsoft.com/azureml/openmpi5.0-cuda12.8-ubuntu24.04", "20260715.v1",
                  "12.8", f"{_CONTAINERS}: CUDA 12.8.1; tag: {_ASSETS_PINS}"
                  "latest/environment/slime-pytorch-2.9-cuda12.8/context/Dockerfile (2026-07-16)"),
        BaseImage("mcr.microsoft.com/azureml/openmpi5.0-cuda12.6-ubuntu24.04", "20260715.v1",
                  "12.6", f"{_CONTAINERS}: CUDA 12.6.3; tag: {_ASSETS_PINS}"
                  "latest/environment/acft-medimageparse-3d-finetune/context/Dockerfile "
                  "(2026-07-16)"),
        BaseImage("mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04",
                  "20250701.v1", "11.8", f"{_CONTAINERS}: not listed; its release notes marked "
                  "it deprecated (2025-09-09)", deprecated=date(2025, 9, 9),
                  replacement="mcr.microsoft.com/azureml/openmpi5.0-cuda12.8-ubuntu24.04"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class ServingImage:
    name: str
    tag: str
    source: str

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"


VLLM_IMAGE = ServingImage(
    "vllm/vllm-openai",
    "v0.27.1",
    "vLLM's official OpenAI-server image; the newest tag a vLLM source names: "
    "vllm-project/recipes models/nvidia/NVIDIA-Nemotron-3.5-Lightning-30B-A3B-BF16.yaml "
    "(added 2026-08-13, still at HEAD 2026-08-21). Its ENTRYPOINT is `vllm serve` (vLLM "
    "docker/Dockerfile). Chosen over Azure ML's foundation-model-serve environment, whose "
    "published version is not in its repo (azureml-assets asset.yaml `version: auto`, "
    "2026-07-23) and whose Dockerfile at HEAD shows no vLLM install (commit b85a8889, "
    "2026-06-25, removed it)",
)
"""What `phi deploy --engine vllm` builds on (jobs/vllm/Dockerfile starts FROM it)."""


@dataclass(frozen=True)
class TorchBuild:
    version: str
    cuda: str
    source: str


AZURE_TORCH = TorchBuild(
    "2.10.0",
    "12.8",
    "PyPI's torch 2.10.0 for Linux x86-64 is a CUDA 12.8 build (googlecolab/colabtools #5801, "
    "PyTorch release manager, 2026-01-21); 2.11 and later are CUDA 13.0 builds that need the "
    "R580 driver and drop Volta (colabtools #5925, #6053)",
)
"""The torch the Azure environments install: PyPI's newest CUDA 12 build, the CUDA line of the
supported base image. PyTorch's own CUDA 12 index for newer versions is not reachable from
where the locks are made, so the tests' newer CPU torch cannot be matched exactly."""

API_VERSIONS: dict[str, str] = {
    # Not ours to choose: what azure-ai-ml 1.35.2's workspace operations send (its generated
    # client is pinned to it), read from the SDK on 2026-12-05; the cleanup's dry run prints it
    # and tests/test_cleanup.py holds that to the requests the SDK makes.
    "Microsoft.MachineLearningServices": "2024-10-01-preview",
    # Azure/azure-rest-api-specs specification/operationalinsights/.../stable/2023-09-01 (workspaces, deletedWorkspaces)
    "Microsoft.OperationalInsights": "2023-09-01",
    # Azure/azure-rest-api-specs specification/keyvault/resource-manager/Microsoft.KeyVault/stable/2023-07-01 (deletedVaults, purge)
    "Microsoft.KeyVault": "2023-07-01",
    # Azure/azure-rest-api-specs specification/authorization/.../stable/2022-04-01 (roleAssignments, $filter=principalId eq)
    "Microsoft.Authorization": "2022-04-01",
    # Azure/azure-rest-api-specs specification/resources/resource-manager/Microsoft.Resources/stable/2021-04-01 (providers)
    "Microsoft.Resources": "2021-04-01",
}
"""ARM api-versions `phi doctor` and the cleanup send, each a stable version in Azure's REST
specifications (checked on CHECKED)."""


@dataclass(frozen=True)
class PolicyBuiltIn:
    display_name: str
    guid: str
    """The definition's name, the same in every tenant."""
    path: str
    """Its file under `_AZURE_POLICY`."""


_AZURE_POLICY = (
    "Azure/azure-policy master f4a50bac (2026-04-29) built-in-policies/policyDefinitions/"
)
POLICY_BUILTINS_CHECKED = date(2026, 11, 22)
"""When the Azure Policy rows below were checked against `_AZURE_POLICY`."""
POLICY_BUILTINS: dict[str, PolicyBuiltIn] = {
    "ml-compute-instance-idle-shutdown": PolicyBuiltIn(
        "Azure Machine Learning Compute Instance should have idle shutdown.",
        "679ddf89-ab8f-48a5-9029-e76054077449", "Machine Learning/IdleShutdown_Audit.json"),
    "ml-compute-local-auth-disabled": PolicyBuiltIn(
        "Azure Machine Learning Computes should have local authentication methods disabled",
        "e96a9a5f-07ca-471b-9bc5-6a0f33cbd68f", "Machine Learning/DisableLocalAuth_Audit.json"),
    "ml-compute-in-vnet": PolicyBuiltIn(
        "Azure Machine Learning Computes should be in a virtual network",
        "7804b5c7-01dc-4723-969b-ae300cc07ff1", "Machine Learning/Vnet_Audit.json"),
    "ml-workspace-public-network-disabled": PolicyBuiltIn(
        "Azure Machine Learning Workspaces should disable public network access",
        "438c38d2-3772-465a-a9cc-7a6666a275ce",
        "Machine Learning/Workspace_PublicNetworkAccessDisabled_Audit.json"),
    "storage-public-access-disallowed": PolicyBuiltIn(
        "Storage account public access should be disallowed",
        "4fa4b6c0-31ca-4c0d-b10d-24b96f62a751",
        "Storage/ASC_Storage_DisallowPublicBlobAccess_Audit.json"),
    "storage-secure-transfer": PolicyBuiltIn(
        "Secure transfer to storage accounts should be enabled",
        "404c3081-a854-4457-ae30-26a93ef643f9", "Storage/Storage_AuditForHTTPSEnabled_Audit.json"),
    "storage-minimum-tls": PolicyBuiltIn(
        "Storage accounts should have the specified minimum TLS version",
        "fe83a0eb-a853-422d-aac2-1bffd182c5d0", "Storage/StorageAccountMinimumTLSVersion_Audit.json"),
    "key-vault-rbac": PolicyBuiltIn(
        "Azure Key Vault should use RBAC permission model",
        "12d4fa5e-1f9f-4c21-97a9-b99b3c6611b5", "Key Vault/Should_Use_RBAC.json"),
    "key-vault-deletion-protection": PolicyBuiltIn(
        "Key vaults should have deletion protection enabled",
        "0b60c0b2-2dc2-4e1c-b5c9-abbed971de53", "Key Vault/Recoverable_Audit.json"),
    "registry-admin-disabled": PolicyBuiltIn(
        "Container registries should have local admin account disabled.",
        "dc921057-6b28-4fbe-9b83-f7bec05db6c2",
        "Container Registry/ACR_AdminAccountDisabled_AuditDeny.json"),
    "require-tag": PolicyBuiltIn(
        "Require a tag on resources", "871b6d14-10aa-478d-b590-94f262ecfa99",
        "Tags/RequireTag_Deny.json"),
    # Read at Azure/azure-policy commit 8f5ad30e on 2026-12-05 (version 1.1.0; audits
    # Microsoft.CognitiveServices/accounts whose disableLocalAuth is not true).
    "ai-services-local-auth-disabled": PolicyBuiltIn(
        "Azure AI Services resources should have key access disabled (disable local "
        "authentication)", "71ef260a-8f18-47b7-abcb-62d0673d94dc",
        "Azure Ai Services/DisableLocalAuth_Audit.json"),
}  # fmt: skip
"""The Azure Policy built-ins the policy pack's rules correspond to (policy/policies.py)."""


# The defaults this repository ships; tests/test_azure_facts.py keeps them current.
DEFAULT_BASE_IMAGE = BASE_IMAGES["mcr.microsoft.com/azureml/openmpi5.0-cuda12.8-ubuntu24.04"]
"""The CUDA line of the torch the environments install (AZURE_TORCH)."""
BASE_IMAGE_CHECKED = date(2026, 12, 5)
"""When BASE_IMAGES' tags were last checked: fixes ship only as new tags, so `phi doctor`
warns when this is more than BASE_IMAGE_MAX_AGE_DAYS old."""
BASE_IMAGE_MAX_AGE_DAYS = 180
DEFAULT_TRAINING_VM = "Standard_NC24ads_A100_v4"
DEFAULT_SERVING_VM = "Standard_NC4as_T4_v3"
"""A 3.8B model holds in a T4's 16 GB in fp16 (7.6 GB of weights), at a fraction of an A100."""
DEFAULT_CPU_VM = "Standard_E16s_v3"
DEFAULT_CPU_SERVING_VM = "Standard_E4s_v3"
DEFAULT_CATALOG_MODEL = "Phi-4-mini-instruct"


def retirement_problem(kind: str, name: str, today: date | None = None) -> str | None:
    """Why `name` cannot be used today ("retired on ...; use ..."), or None when it can.

    `kind` is "vm", "model" or "image"; a name the table does not know is not refused here.
    """
    today = today or date.today()
    if kind == "vm" and name in VM_SIZES:
        size = VM_SIZES[name]
        ended, replacement = size.retired, size.replacement
    elif kind == "model" and name in MODELS:
        model = MODELS[name]
        ended, replacement = model.retired, model.replacement
    elif kind == "image" and name.split(":")[0] in BASE_IMAGES:
        image = BASE_IMAGES[name.split(":")[0]]
        ended, replacement = image.deprecated, image.replacement
    else:
        return None
    if ended is None or today < ended:
        return None
    verb = "deprecated" if kind == "image" else "retired"
    return f"{name} was {verb} by Azure on {ended:%Y-%m-%d}; use {replacement}"


SERVERLESS_HOSTING_FEE = (
    "a serverless deployment of a fine-tuned model bills an hourly hosting fee for as long as "
    "it exists, even when idle; no fee figure is public in the sources read: see the model's "
    "pricing page (the deployment wizard's Pricing and terms tab)"
)
"""MicrosoftDocs/azure-ai-docs articles/foundry-classic/how-to/fine-tune-serverless.md (ms.date
01/28/2026, read 2026-12-05): "each customized (fine-tuned) model that's deployed incurs an
hourly hosting cost regardless of whether completions or chat completions calls are being
made to the model". Neither that page nor Foundry's cost-management page gives the figure."""


# --- Azure AI Content Safety: what `phi data screen`, `phi eval`'s safety gate and `phi cost`
# rely on, and what the stack's config accepts (`contentSafety`, `contentSafetySku`) ---

CONTENT_SAFETY_CHECKED = date(2026, 12, 5)
"""When every Content Safety fact below was last checked against its source."""
_CS_SPEC = (
    "Azure/azure-rest-api-specs specification/cognitiveservices/data-plane/ContentSafety/"
    "stable/2024-09-01/contentsafety.json (the newest stable version; read 2026-12-05)"
)
_CS_OVERVIEW = (
    "MicrosoftDocs/azure-ai-docs articles/ai-services/content-safety/overview.md "
    "(ms.date 09/16/2025, read 2026-12-05)"
)
CONTENT_SAFETY_API_VERSION = "2024-09-01"
"""The data-plane api-version `phi` sends (`_CS_SPEC`)."""
CONTENT_SAFETY_ANALYZE_PATH = "/contentsafety/text:analyze"
"""Text analysis: the spec's host template `{endpoint}/contentsafety` and its path
`/text:analyze` (`_CS_SPEC`). The same version has `/text:shieldPrompt` (Prompt Shields)."""
CONTENT_SAFETY_SCOPE = "https://cognitiveservices.azure.com/.default"
"""The Entra ID scope of the spec's OAuth2 security definition (`_CS_SPEC`)."""
CONTENT_SAFETY_MAX_TEXT = 10_000
"""Unicode code points of text in one analysis request: the spec's `maxLength` for
`AnalyzeTextOptions.text` (`_CS_SPEC`); the overview's "Default maximum length: 10K characters
(split longer texts as needed)" (`_CS_OVERVIEW`)."""
CONTENT_SAFETY_SKUS = ("S0", "F0")
"""The account's pricing tiers: "Azure AI Content Safety has an F0 and S0 pricing tier"
(`_CS_OVERVIEW`, section Pricing). The first is the stack's default."""
CONTENT_SAFETY_REQUESTS_PER_SECOND: dict[str, float] = {"F0": 5.0, "S0": 100.0}
"""The moderation APIs' (text and image) query rate by tier: F0 "5 RPS", S0 "1000 RP10S",
1000 requests per 10 seconds, here as its average (`_CS_OVERVIEW`, section Query rates; the FAQ,
articles/ai-services/content-safety/faq.yml ms.date 09/16/2025, says the same)."""
CONTENT_SAFETY_REGIONS = frozenset(
    {
        "australiaeast",
        "canadaeast",
        "centralus",
        "eastus",
        "eastus2",
        "francecentral",
        "germanywestcentral",
        "italynorth",
        "japaneast",
        "koreacentral",
        "northcentralus",
        "polandcentral",
        "southcentralus",
        "southindia",
        "swedencentral",
        "switzerlandnorth",
        "switzerlandwest",
        "uaenorth",
        "uksouth",
        "westeurope",
        "westus",
        "westus2",
        "westus3",
    }
)
"""Regions whose Content Safety accounts offer text analysis: the "Text" column of the region
table in `_CS_OVERVIEW`, as programmatic names; government regions are left out. The newer
MicrosoftDocs/azure-ai-docs articles/ai-services/content-safety/region-availability.md (ms.date
09/18/2026; its include includes/region-availability-include.md, ms.date 09/09/2026, read
2026-12-05) lists "Content harms" in every region here and also in brazilsouth,
canadacentral, southeastasia, spaincentral and southafricanorth, which the stack does not
accept yet."""
COGNITIVE_SERVICES_USER = "a97b65f3-24c7-4388-baec-2e87135dc908"
"""The built-in role Cognitive Services User (data actions `Microsoft.CognitiveServices/*`):
what Content Safety's Entra ID callers need (`_CS_OVERVIEW`, section Security). Its id:
MicrosoftDocs/azure-docs articles/role-based-access-control/built-in-roles/
ai-machine-learning.md, read 2026-12-05. `finetune_phi.core.roles.BuiltInRole` assigns it."""
CONTENT_SAFETY_PRICING = "https://aka.ms/content-safety-pricing"
"""Content Safety's pricing page, as `_CS_OVERVIEW` and the FAQ link it: S0 bills the text API
"for the amount of text records submitted" and "each model has its own corresponding rate";
on F0 "service usage is throttled if you reach the transaction limit" (FAQ, ms.date
09/16/2025, read 2026-12-05). The free tier's monthly limit is on that page, which no source
read here reproduces."""


@dataclass(frozen=True)
class PriceMeter:
    """A usage meter in the Azure Retail Prices API (its field names; values case-sensitive)."""

    product: str
    """`productName`."""
    sku: str
    """`skuName`."""
    meter: str
    """`meterName`."""
    unit: str
    """`unitOfMeasure` expected ("1K": a price per thousand units)."""
    source: str


CONTENT_SAFETY_TEXT_METER = PriceMeter(
    "Content Safety",
    "Standard",
    "Standard Text Records",
    "1K",
    "Not in Microsoft's documentation: the names three unrelated public repositories filter the "
    'Retail Prices API by (its serviceName is now "Foundry Tools", formerly "Cognitive '
    'Services"), found with the code index on 2026-12-05. `phi cost` asks for the product in '
    "the stack's region and says when no such meter answers, naming `CONTENT_SAFETY_PRICING`.",
)
"""S0's text-analysis meter, per 1,000 text records."""


# --- Preference tuning (DPO): what Azure's managed fine-tuning offers, for `phi finetune
# submit --trainer dpo` on the catalog and serverless methods ---

MANAGED_DPO_CHECKED = date(2026, 12, 5)
"""When the managed-DPO facts below were last checked against their sources."""
_MANAGED_DPO_PAGE = (
    "https://learn.microsoft.com/azure/foundry/openai/how-to/"
    "fine-tuning-direct-preference-optimization"
)
"""Foundry's direct preference optimization page: MicrosoftDocs/azure-ai-docs
articles/foundry/openai/how-to/fine-tuning-direct-preference-optimization.md (ms.date
10/05/2026, read 2026-12-05); its model table, articles/foundry/openai/includes/
how-to-fine-tuning-direct-preference-optimization-1.md (ms.date 03/20/2026), lists
gpt-4o-2024-08-06, gpt-4.1-2025-04-14 and gpt-4.1-mini-2025-04-14."""
MANAGED_DPO_MODELS = ("gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano")
"""The models Foundry's managed fine-tuning trains with DPO: the rows whose Methods column
says DPO in MicrosoftDocs/azure-ai-docs articles/foundry/includes/fine-tune-supported-models.md
(ms.date 03/05/2026, read 2026-12-05; included by articles/foundry/fine-tuning/overview.md,
ms.date 10/06/2026), all Azure OpenAI models. Its open models (Ministral-3B, Qwen-32B,
Llama-3.3-70B-Instruct, gpt-oss-20b) are SFT only, and it lists no Phi model. The paths this
tool drives for Phi take chat data only: the registry's chat-completion pipeline (Phi-4's
spec, `_PHI4_SPEC`, lists fineTuningTasks chat-completion), and serverless fine-tuning, whose
task types in azure-ai-ml 1.35.2 (`FineTuningTaskType`, read 2026-12-05) have no preference
task."""
MANAGED_DPO = (
    f"Azure's managed DPO fine-tunes Azure OpenAI models only ({', '.join(MANAGED_DPO_MODELS)}: "
    f"{_MANAGED_DPO_PAGE}, ms.date 10/05/2026), no Phi model"
)
"""What `phi finetune submit --trainer dpo` says when a managed method refuses it."""
