"""`phi rehearse`, the README's first command, end to end; and a stage that fails."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

PHI = [sys.executable, "-m", "jobs.cli"]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def no_process_mentions(text: str) -> bool:
    result = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return not any(text in line and "pytest" not in line for line in result.stdout.splitlines())


def test_rehearse_runs_the_whole_pipeline_and_leaves_nothing_running(tmp_path: Path) -> None:
    work = tmp_path / "rehearsal"
    result = subprocess.run(
        [*PHI, "rehearse", "--work-dir", str(work)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for number, stage in enumerate(["model", "data", "train", "serve", "flow", "answer"], start=1):
        assert f"[{number}/6]" in out
        assert re.search(rf"^\| {stage} \| \d+\.\d \|$", out, re.M), stage
    answer = re.search(r"^      A: (.*)$", out, re.M)
    assert answer is not None
    assert answer.group(1).strip()
    loss = re.search(r"loss (\d+\.\d+) -> (\d+\.\d+)", out)
    assert loss is not None
    assert float(loss.group(2)) < float(loss.group(1))
    assert (work / "out" / "model" / "MLmodel").is_file()
    assert {p.name for p in (work / "logs").iterdir()} >= {"train.log", "serve.log", "flow.log"}
    port = int(re.search(r"scoring server on port (\d+)", out).group(1))  # type: ignore[union-attr]
    assert port_is_free(port)
    assert no_process_mentions(str(work))


def test_a_failed_stage_names_itself_and_its_log_and_stops_everything(tmp_path: Path) -> None:
    work = tmp_path / "rehearsal"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*PHI, "rehearse", "--work-dir", str(work), "--port", str(port)],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert "phi rehearse: stage 'serve' failed" in result.stderr
    assert f"log: {work / 'logs' / 'serve.log'}" in result.stderr
    assert (work / "logs" / "serve.log").read_text()
    assert no_process_mentions(str(work))


def test_rehearse_refuses_a_work_directory_in_use(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = subprocess.run(
        [*PHI, "rehearse", "--work-dir", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "is not empty" in result.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_readme_lists_the_azure_stages_in_order() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## The same stages in Azure\n", 1)[1].split("\n## ", 1)[0]
    stages = [
        "pulumi up",
        "phi data prepare",
        "phi finetune submit",
        "phi deploy",
        "phi flow connect",
        "pf flow test",
        "pulumi destroy",
    ]
    positions = [section.find(stage) for stage in stages]
    assert -1 not in positions
    assert positions == sorted(positions)
