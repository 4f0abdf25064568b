"""The environment and image the fine-tune job and the managed deployment run in.

Both are a pinned Azure ML base image plus a conda file holding exactly the pins of an
upload folder's `environment/requirements.txt`, which `make lock` writes from the same
locks the tests install, so what runs in Azure is what was tested here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune_phi.core.azure_facts import DEFAULT_BASE_IMAGE
from finetune_phi.core.contract import PROJECT

# A supported Azure ML base image (OS, conda, OpenMPI, CUDA 12.8) at a tag Azure's own
# environments pin (facts table); torch brings its CUDA libraries of the same line.
BASE_IMAGE = DEFAULT_BASE_IMAGE.reference
PYTHON_VERSION = "3.11"


def conda_environment(requirements: Path, name: str) -> dict[str, Any]:
    """A conda file: the Python version of the locks and exactly the pins of `requirements`."""
    pins = [
        line.strip()
        for line in requirements.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return {
        "name": name,
        "channels": ["conda-forge"],
        "dependencies": [f"python={PYTHON_VERSION}", "pip", {"pip": pins}],
    }


def environment(requirements: Path, name: str) -> Any:
    """azure-ai-ml's Environment: the base image with `requirements` installed."""
    from azure.ai.ml.entities import Environment

    return Environment(image=BASE_IMAGE, conda_file=conda_environment(requirements, name))


def tags(**extra: str) -> dict[str, str]:
    """The tags of everything `phi` creates in Azure ML: the project's, plus `extra`."""
    return {"project": PROJECT, **extra}
