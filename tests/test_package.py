"""`pip install .` gives a `phi` that works from any folder: the wheel carries the folders
Azure ML uploads, the chat sample and the flow. (The session's main rehearsal, in
conftest.py, runs from this same installed wheel.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT, SAMPLE

OUTPUTS = {
    "subscriptionId": "sub-1",
    "resourceGroupName": "rg-phi-dev",
    "workspaceName": "mlw-phi-dev",
    "gpuComputeName": "gpu-phidev",
    "endpointName": "phi-dev-abc123",
    "identityClientId": "client-of-id-phi-dev",
}


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A folder outside the checkout with prepared data and saved stack outputs."""
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS))
    return tmp_path


def phi(installed_phi: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(installed_phi / "phi"), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_the_installed_phi_is_the_wheels_not_the_checkouts(
    installed_phi: Path, elsewhere: Path
) -> None:
    result = subprocess.run(
        [str(installed_phi / "python"), "-c", "import jobs, flow; print(jobs.__file__, flow.__file__)"],
        cwd=elsewhere, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert str(ROOT) not in result.stdout
    assert "site-packages" in result.stdout


def test_dry_runs_find_their_job_files_from_any_folder(
    installed_phi: Path, elsewhere: Path
) -> None:
    prepared = phi(
        installed_phi,
        elsewhere,
        "data",
        "prepare",
        "--from",
        str(SAMPLE),
        "--sample",
        "100%",
        "--out",
        "data",
    )
    assert prepared.returncode == 0, prepared.stderr
    submit = phi(
        installed_phi, elsewhere, "finetune", "submit", "--outputs", "outputs.json", "--dry-run"
    )
    assert submit.returncode == 0, submit.stderr
    job = yaml.safe_load(submit.stdout)
    assert job["code"].endswith("jobs/uploads/train/src")
    assert "site-packages" in job["code"]
    assert "python train.py --config hyperparameters.yaml" in job["command"]
    assert any(
        pin.startswith("trl==")
        for pin in job["environment"]["conda_file"]["dependencies"][2]["pip"]
    )
    deploy = phi(
        installed_phi, elsewhere, "deploy", "--outputs", "outputs.json", "--dry-run", "--job", "j1"
    )
    assert deploy.returncode == 0, deploy.stderr
    deployment = list(yaml.safe_load_all(deploy.stdout))[1]
    assert deployment["code_configuration"]["code"].endswith("jobs/uploads/score")
    assert any(
        pin.startswith("azureml-inference-server-http==")
        for pin in deployment["environment"]["conda_file"]["dependencies"][2]["pip"]
    )
