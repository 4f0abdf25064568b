"""`pip install .` gives a `phi` that works from any folder: the wheel carries the folders
Azure ML uploads, the chat sample and the flow. (The session's main rehearsal, in
conftest.py, runs from this same installed wheel.)"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
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
        [
            str(installed_phi / "python"),
            "-c",
            "import finetune_phi, finetune_phi.core.folders as f; print(finetune_phi.__file__, f.JOBS, f.FLOWS)",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    )
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
    assert job["code"].endswith("jobs/train/src")
    assert "site-packages" in job["code"]
    assert "python train.py --config hyperparameters.yaml" in job["command"]
    lock = job["environment"]["conda_file"]["dependencies"][2]["pip"]  # named, not listed
    assert "site-packages" in lock["lock"]
    assert "trl==" in Path(lock["lock"]).read_text()
    deploy = phi(
        installed_phi, elsewhere, "deploy", "--outputs", "outputs.json", "--dry-run", "--job", "j1"
    )
    assert deploy.returncode == 0, deploy.stderr
    deployment = list(yaml.safe_load_all(deploy.stdout))[1]
    assert deployment["code_configuration"]["code"].endswith("jobs/score")
    assert any(
        pin.startswith("azureml-inference-server-http==")
        for pin in deployment["environment"]["conda_file"]["dependencies"][2]["pip"]
    )
    vllm = phi(
        *(installed_phi, elsewhere, "deploy", "--outputs", "outputs.json", "--dry-run"),
        *("--job", "j1", "--engine", "vllm"),
    )
    assert vllm.returncode == 0, vllm.stderr
    build = list(yaml.safe_load_all(vllm.stdout))[1]["environment"]["build"]
    assert (Path(build["path"]) / build["dockerfile_path"]).is_file()
    assert "site-packages" in build["path"]


def test_the_wheel_installs_finetune_phi_alone(installed_phi: Path) -> None:
    [wheel] = (installed_phi.parents[1] / "dist").glob("finetune_phi-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        names = set(archive.namelist())
    assert tops == {"finetune_phi", wheel.name.split("-py3")[0] + ".dist-info"}
    # the folders Azure ML uploads and the flows travel inside it
    assert "finetune_phi/jobs/train/src/train.py" in names
    assert "finetune_phi/jobs/score/environment/requirements.txt" in names
    assert {"finetune_phi/jobs/score/server.py", "finetune_phi/jobs/vllm/Dockerfile"} <= names
    assert "finetune_phi/flow/promptflow/flow.dag.yaml" in names
    assert "finetune_phi/flow/agent/chat.py" in names
    # and every module of the package (pyproject.toml lists its folders one by one)
    source = ROOT / "src"
    modules = {path.relative_to(source).as_posix() for path in source.rglob("*.py")}
    assert modules <= names, sorted(modules - names)


def test_a_plain_install_starts_and_names_the_extra_it_lacks(
    installed_phi: Path, tmp_path: Path
) -> None:
    """`pip install .` with the declared dependencies only (taken from uv's cache, offline):
    --help and --version work from another folder; a command that needs an extra says which."""
    [wheel] = (installed_phi.parents[1] / "dist").glob("finetune_phi-*.whl")
    [uv] = (ROOT / ".tools").glob("uv-*/bin/uv")
    plain = tmp_path / "plain"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(plain)], check=True)
    installed = subprocess.run(
        [
            *(str(uv), "pip", "install", "--offline", "--quiet"),
            *("--python", str(plain / "bin" / "python")),
            *("--constraint", str(ROOT / "requirements" / "dev.txt"), str(wheel)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()

    def plain_phi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(plain / "bin" / "phi"), *args],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )

    helped = plain_phi("--help")
    assert helped.returncode == 0, helped.stderr
    assert "rehearse" in helped.stdout
    versioned = plain_phi("--version")
    assert versioned.returncode == 0, versioned.stderr
    assert versioned.stdout.strip() == "phi 0.1.0"
    # data from the user's own file needs nothing more
    prepared = plain_phi("data", "prepare", "--from", str(SAMPLE), "--out", "data")
    assert prepared.returncode == 0, prepared.stderr
    # a model does
    (work / "base").mkdir()
    lacking = plain_phi(
        "eval", "--base", "base", "--candidate", "base", "--data", "data/eval_data.jsonl"
    )
    assert lacking.returncode == 2
    assert lacking.stderr == (
        "phi: error: the Python package 'transformers' is not installed; in the checkout, "
        "pip install '.[train]' (or `make venv` for every stage)\n"
    )
