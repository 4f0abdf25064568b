"""The benchmark scripts run end to end on this CPU (their figures are for the README, not
asserted here: speed is measured by the scripts, never by a test)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.slow


def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return result.stdout


def test_training_benchmark_runs_every_recipe_this_machine_can() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("asserts the CPU table; on a GPU, run the script itself")
    table = run_script(
        "benchmark_training.py", "--steps", "2", "--max-length", "128", "--batch-size", "2"
    )
    rows = {
        line.split(" | ")[0].removeprefix("| "): line
        for line in table.splitlines()
        if line.startswith("| ")
    }
    assert {"tutorial", "ours", "LoRA", "DPO", "DPO + LoRA"} <= set(rows)
    assert "not run here: Liger's kernels are Triton" in rows["ours + Liger"]
    assert "| sft | eager | wrapped | False | True |" in rows["tutorial"]
    assert "| sft | sdpa | bfd | True | False |" in rows["ours"]
    # DPO side by side with SFT, in the same run: no packing, its own tokens/s and memory.
    assert "| dpo | sdpa | False | False | False |" in rows["DPO"]
    assert "| dpo | sdpa | False | False | False |" in rows["DPO + LoRA"]
    assert "ours / tutorial throughput" in table
    assert "DPO / SFT (ours): throughput " in table
    assert "x batch 2 (DPO: 1 pair) x max_length 128" in table
    assert table.rstrip().endswith("scripts/benchmark_training.py --steps 30")


def test_scoring_benchmark_gets_the_same_answers_both_ways() -> None:
    out = run_script("benchmark_scoring.py", "--repeats", "1", "--max-new-tokens", "4")
    assert "same answers: True" in out
    assert "| 1 request of 16 questions (batched) |" in out


def test_serving_benchmark_measures_both_engines_vllm(
    scoring_server: str, vllm_server: str
) -> None:
    """Both engines, interleaved, on the session's servers of one fine-tune (the script
    starts its own the same way, `phi serve`, as the scoring benchmark's test shows)."""
    out = run_script(
        "benchmark_serving.py",
        *("--served", f"transformers={scoring_server}", "--served", f"vllm={vllm_server}"),
        *("--rounds", "1", "--concurrency", "1,4", "--requests", "4", "--max-tokens", "4"),
    )
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith(("| 1 |", "| 4 |"))]
    assert [(row[0], row[1]) for row in rows] == [
        ("| 1", "transformers"),
        ("| 1", "vllm"),
        ("| 4", "transformers"),
        ("| 4", "vllm"),
    ]
    assert all(float(row[2]) > 0 for row in rows)
    assert "vllm / transformers at 4 clients:" in out
    # One fine-tune in its own dtype on both engines: the same greedy answers, every one.
    assert re.search(r"greedy answers equal on (\d+) of \1 prompts", out), out
