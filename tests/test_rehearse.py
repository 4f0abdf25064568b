"""`phi rehearse`, the README's first command, end to end; and a stage that fails."""

from __future__ import annotations

import re
import resource
import subprocess
from pathlib import Path

import pytest

from finetune_phi.local.rehearse import STAGES
from tests.support import PHI, ROOT, Rehearsal, no_process_mentions, port_is_free

pytestmark = pytest.mark.slow


def test_rehearse_runs_the_whole_pipeline_and_leaves_nothing_running(
    rehearsal: Rehearsal,
) -> None:
    result, work = rehearsal.result, rehearsal.work
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert list(STAGES) == [
        *("model", "data", "train", "serve", "verify"),
        *("flow", "agent", "answer", "eval"),
    ]
    for number, stage in enumerate(STAGES, start=1):
        assert f"[{number}/{len(STAGES)}] {STAGES[stage]}" in out
        assert re.search(rf"^\| {stage} \| \d+\.\d \|$", out, re.M), stage
    answer = re.search(r"^      A \(Prompt flow\): +(.*)$", out, re.M)
    assert answer is not None
    assert answer.group(1).strip()
    agent = re.search(r"^      A \(Agent Framework\): (.*)   \(the same\)$", out, re.M)
    assert agent is not None, out
    assert agent.group(1).strip() == answer.group(1).strip()
    evaluated = re.search(r"^      \| loss \| (\d+\.\d+) \| (\d+\.\d+) \|", out, re.M)
    assert evaluated is not None, out
    assert float(evaluated.group(2)) < float(evaluated.group(1))
    loss = re.search(r"loss (\d+\.\d+) -> (\d+\.\d+)", out)
    assert loss is not None
    assert float(loss.group(2)) < float(loss.group(1))
    assert (work / "out" / "model" / "MLmodel").is_file()
    assert {p.name for p in (work / "logs").iterdir()} >= {
        "train.log",
        "serve.log",
        "verify.log",
        "flow.log",
    }
    port = int(re.search(r"\(transformers, port (\d+)\)", out).group(1))  # type: ignore[union-attr]
    assert re.search(r"^      agreement: 100% of 4 prompts", out, re.M), out
    assert port_is_free(port)
    # Its own server and flow run (the session's other tests serve its model themselves).
    assert no_process_mentions(f"--port {port}")
    assert no_process_mentions(str(work / "flow"))


def test_a_failed_stage_names_itself_and_its_log_and_stops_everything(tmp_path: Path) -> None:
    """A disk that takes no file over 256 kB (a quota, a file-size limit): the first stage
    that writes more, the tiny model's (790 kB), fails, with its log, and nothing runs on."""
    work = tmp_path / "work"

    def small_files_only() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**18, 2**18))

    result = subprocess.run(
        [*PHI, "rehearse", "--work-dir", str(work)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=small_files_only,
    )
    assert result.returncode == 1, result.stderr
    assert "phi: error: stage 'model' failed" in result.stderr
    assert "File too large" in result.stderr
    assert f"log: {work / 'logs' / 'model.log'}" in result.stderr
    assert "File too large" in (work / "logs" / "model.log").read_text()
    assert "Traceback" not in result.stderr
    assert no_process_mentions(str(work))


def test_rehearse_refuses_a_work_directory_in_use(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = subprocess.run(
        [*PHI, "rehearse", "--work-dir", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2  # a usage error: nothing was started
    assert "not empty" in result.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_readme_lists_the_azure_stages_in_order() -> None:
    readme = (ROOT / "README.md").read_text()
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
