"""Shared fixtures: offline Hugging Face settings, the tiny Phi-3 model and its one fine-tune
(built once per run, whatever the number of workers), the rehearsal (for its own tests
only), an isolated Prompt flow home, the Content Safety stand-in and a loopback sign-in.
Helpers live in tests/support.py."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.content_safety_server import (
    ContentSafetyStandIn,
    TokenServer,
    content_safety,
    token_server,
)
from tests.support import (
    AGENT_PYTHON,
    BIN,
    VLLM_PYTHON,
    NoManagedIdentity,
    Rehearsal,
    build_tiny_model,
    built_once,
    http_server,
    install_wheel,
    isolated_promptflow,
    serving,
    train_like_the_rehearsal,
)

# Nothing here may reach a hub: fail fast instead of retrying for a minute.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# One compute thread per process, in every worker and every process a test starts: there
# are already more workers than cores, and OpenMP threads spin-wait for each other when the
# processes outnumber the cores (three tiny trainings side by side on two cores: 52 s with
# torch's default two threads each, 19 s with one).
os.environ["OMP_NUM_THREADS"] = "1"


NEEDS_A_TRAINED_MODEL_OR_A_FLOW = {
    "fine_tuned",
    "dpo_tuned",
    "scoring_server",
    "vllm_server",
    "rehearsal",
    "pf_env",
}
"""Fixtures that train or serve the tiny model, or run Prompt flow: a test using one is slow."""


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's per-test distribution, but every test with "vllm" in its id on one
    worker, so the vLLM server (a minute to start) starts once. (Its own `xdist_group`
    marks do not group here: pytest-xdist 3.8 with pytest 9.)"""
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class VllmTogether(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return "vllm" if "vllm" in nodeid else nodeid

    return VllmTogether(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what waits for a trained model or Prompt flow as slow (`make test-fast` skips
    it), then put slow tests first: spread over the workers from the start, they do not leave
    one worker running alone at the end."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if NEEDS_A_TRAINED_MODEL_OR_A_FLOW & fixtures:
            item.add_marker(pytest.mark.slow)
        if "vllm_server" in fixtures and "vllm" not in item.nodeid:
            raise pytest.UsageError(f"{item.nodeid}: a test of the vLLM server says vllm in its id")
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A folder every worker of this test run shares (pytest-xdist gives each worker its own
    base temp folder, under one parent)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def installed_phi(run_dir: Path) -> Path:
    """The bin folder of a fresh environment with this project's wheel installed."""
    return built_once(run_dir / "wheel", install_wheel) / "venv" / "bin"


@pytest.fixture(scope="session")
def rehearsal(installed_phi: Path, tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    """The README's first command as a user runs it: the installed wheel's `phi rehearse`,
    started outside the checkout (Prompt flow's `pf` comes from PATH, the Agent Framework
    flow from .venv-agent)."""
    work = tmp_path_factory.mktemp("rehearsal") / "work"
    env = {
        **os.environ,
        "PATH": f"{installed_phi}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}",
        "PHI_AGENT_PYTHON": str(AGENT_PYTHON),
    }
    result = subprocess.run(
        [str(installed_phi / "phi"), "rehearse", "--work-dir", str(work)],
        cwd=work.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return Rehearsal(result, work)


@pytest.fixture(scope="session")
def tiny_model(run_dir: Path) -> Path:
    """A random-initialised Phi-3-architecture model and its tokenizer, built offline from
    the shipped sample, as the rehearsal's first stage builds it."""
    return built_once(run_dir / "tiny-model", build_tiny_model)


@pytest.fixture(scope="session")
def fine_tuned(run_dir: Path, tiny_model: Path) -> Path:
    """That model fine-tuned on the shipped sample by `phi train --local` with the
    rehearsal's recipe, once per run: `model/` is the MLflow model, `checkpoints/` the
    trainer state and metrics."""
    return built_once(run_dir / "fine-tuned", lambda out: train_like_the_rehearsal(tiny_model, out))


@pytest.fixture(scope="session")
def scoring_server(fine_tuned: Path) -> Iterator[str]:
    with serving(fine_tuned / "model") as url:
        yield url


@pytest.fixture(scope="session")
def vllm_server(fine_tuned: Path, run_dir: Path) -> Iterator[str]:
    """`phi serve --engine vllm` on the fine-tuned model. Its start-up takes a minute on two
    cores: tests that use it say vllm in their id, and run on one worker, which starts it
    once (pytest_xdist_make_scheduler)."""
    if not VLLM_PYTHON.is_file():
        pytest.skip("needs .venv-vllm: `make venv-vllm` (make test builds it)")
    caches = run_dir / "vllm-caches"  # vLLM's and torch's compile caches, not the home's
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLLM_CACHE_ROOT", str(caches / "vllm"))
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(caches / "inductor"))
        with serving(fine_tuned / "model", engine="vllm", seconds=600) as url:
            yield url


@pytest.fixture(scope="session")
def no_managed_identity() -> Iterator[str]:
    """The base URL of a managed-identity endpoint that has no identity to give."""
    with http_server(NoManagedIdentity) as url:
        yield url


@pytest.fixture
def pf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An isolated Prompt flow home for this test, in os.environ and as a subprocess env."""
    variables = isolated_promptflow(tmp_path)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return {**os.environ, **variables}


@pytest.fixture
def service() -> Iterator[ContentSafetyStandIn]:
    """The Content Safety stand-in (tests/content_safety_server.py) on a loopback port."""
    with content_safety() as state:
        yield state


@pytest.fixture
def signed_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenServer]:
    """DefaultAzureCredential in this process signs in at a loopback managed identity."""
    with token_server() as tokens:
        for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE", raising=False)
        monkeypatch.setenv("IDENTITY_ENDPOINT", tokens.url)
        monkeypatch.setenv("IDENTITY_HEADER", "x")
        yield tokens


# Preference tuning after SFT: the fine-tune above, DPO-tuned once per run on pairs made from
# the same split of the sample (chosen: the reference answer; rejected: other conversations'
# answers), with a recipe that moves the tiny model in seconds.
DPO_ARGS = (
    "--learning_rate",
    "1e-3",
    "--num_train_epochs",
    "3",
    "--per_device_train_batch_size",
    "4",
    "--gradient_accumulation_steps",
    "1",
    "--max_length",
    "128",
    "--logging_steps",
    "3",
    "--activation_checkpointing",
    "false",
)


def _preference_pairs(chat: Path, out: Path, per_row: int) -> Path:
    """`per_row` pairs for each conversation of a chat JSONL file: its last turn as the prompt's
    answer, chosen, against as many other answers of the file, rejected."""
    import json

    rows = [json.loads(line) for line in chat.read_text().splitlines() if line.strip()]
    answers = sorted({row["messages"][-1]["content"] for row in rows})
    pairs = []
    for index, row in enumerate(rows):
        *prompt, answer = row["messages"]
        others = [a for a in answers if a != answer["content"]]
        for k in range(per_row):
            rejected = others[(7 * index + 5 * k) % len(others)]
            pairs.append(
                {
                    "prompt": prompt,
                    "chosen": [answer],
                    "rejected": [{"role": "assistant", "content": rejected}],
                }
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    return out


def _dpo_after_sft(sft: Path, out: Path) -> None:
    """`phi train --local --trainer dpo` from the SFT run's MLflow model, into `out`."""
    import sys

    train = _preference_pairs(sft / "data" / "train_data.jsonl", out / "pairs" / "train.jsonl", 2)
    held_out = _preference_pairs(sft / "data" / "eval_data.jsonl", out / "pairs" / "eval.jsonl", 3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "finetune_phi.cli", "train", "--local", "--trainer", "dpo"),
            *("--model", str(sft / "model"), "--output-dir", str(out)),
            *("--train-file", str(train), "--eval-file", str(held_out), *DPO_ARGS),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    (out / "stdout.txt").write_text(result.stdout)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="session")
def dpo_tuned(run_dir: Path, fine_tuned: Path) -> Path:
    """`fine_tuned`'s MLflow model preference-tuned by `phi train --local --trainer dpo`, once
    per run: `model/` the merged MLflow model, `checkpoints/` the trainer state and metrics,
    `mlruns/` the MLflow run, `pairs/` the pairs (`train.jsonl`, and `eval.jsonl` held out:
    the eval split's conversations), `stdout.txt` what the run printed."""
    return built_once(run_dir / "dpo-tuned", lambda out: _dpo_after_sft(fine_tuned, out))
