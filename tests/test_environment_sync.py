"""The Azure ML training environment and the tests' environment come from one lock."""

from __future__ import annotations

from jobs.cloud.environment import conda_environment
from jobs.uploads import TRAIN_REQUIREMENTS as REQUIREMENTS
from tests.support import ROOT


def pins(text: str) -> dict[str, str]:
    result = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            result[name.lower()] = version
    return result


def test_azure_requirements_are_the_train_lock_with_cudas_torch() -> None:
    lock = pins((ROOT / "requirements" / "train.txt").read_text())
    azure = pins(REQUIREMENTS.read_text())
    assert lock["torch"] == "2.13.0+cpu"
    assert azure.pop("torch") == "2.13.0"
    lock.pop("torch")
    assert azure == lock


def test_every_train_pin_is_the_version_the_tests_use() -> None:
    dev = pins((ROOT / "requirements" / "dev.txt").read_text())
    train = pins((ROOT / "requirements" / "train.txt").read_text())
    assert {name: dev[name] for name in train} == train


def test_the_job_environment_installs_exactly_those_pins() -> None:
    dependencies = conda_environment(REQUIREMENTS, "train")["dependencies"]
    assert dependencies[0] == "python=3.11"
    assert pins("\n".join(dependencies[2]["pip"])) == pins(REQUIREMENTS.read_text())
