"""The Azure ML environments and the tests' environment come from one lock: the same
version of every package, but torch, which in Azure is PyPI's CUDA 12 build with its CUDA
wheels (src/finetune_phi/core/azure_facts.py says which and why)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from finetune_phi.cloud.environment import conda_environment
from finetune_phi.core.azure_facts import AZURE_TORCH
from finetune_phi.core.folders import SCORE_REQUIREMENTS, TRAIN_REQUIREMENTS
from tests.support import ROOT

# What the CUDA build of torch brings beside itself.
CUDA_PACKAGES = re.compile(r"nvidia-.*|triton|cuda-.*")
# The `gpu` extra: in the training job's environment only (Triton kernels need a GPU).
GPU_ONLY = {
    re.split(r"[<>=!~ ]", requirement)[0].lower()
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["gpu"]
}


def pins(text: str) -> dict[str, str]:
    result = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            result[name.lower()] = version
    return result


@pytest.mark.parametrize(
    ("lock", "azure", "gpu_only"),
    [("train.txt", TRAIN_REQUIREMENTS, GPU_ONLY), ("serve.txt", SCORE_REQUIREMENTS, set())],
)
def test_azure_environment_is_the_cpu_lock_with_cudas_torch(
    lock: str, azure: Path, gpu_only: set[str]
) -> None:
    cpu = pins((ROOT / "requirements" / lock).read_text())
    gpu = pins(azure.read_text())
    assert cpu.pop("torch") == "2.13.0+cpu"
    assert gpu.pop("torch") == AZURE_TORCH.version
    cuda = {name for name in gpu if CUDA_PACKAGES.fullmatch(name)}
    assert any(name.startswith("nvidia-cudnn-cu12") for name in cuda)
    assert any(name.startswith("nvidia-") and name.endswith("-cu12") for name in cuda)
    assert not any(name.endswith("-cu13") for name in gpu)
    shared = set(cpu) & set(gpu)
    assert {name: gpu[name] for name in shared} == {name: cpu[name] for name in shared}
    # Nothing but torch's own build needs, and the GPU-only kernels, differ.
    assert set(gpu) - set(cpu) == cuda | gpu_only
    assert set(cpu) - set(gpu) <= {"setuptools"}


def test_every_train_pin_is_the_version_the_tests_use() -> None:
    dev = pins((ROOT / "requirements" / "dev.txt").read_text())
    train = pins((ROOT / "requirements" / "train.txt").read_text())
    assert {name: dev[name] for name in train} == train


def test_the_job_environment_installs_exactly_those_pins() -> None:
    dependencies = conda_environment(TRAIN_REQUIREMENTS, "train")["dependencies"]
    assert dependencies[0] == "python=3.11"
    assert pins("\n".join(dependencies[2]["pip"])) == pins(TRAIN_REQUIREMENTS.read_text())
