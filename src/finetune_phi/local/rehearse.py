"""`phi rehearse`: the whole pipeline offline, on the project's real code, in a few minutes.

1. build a tiny Phi-3-architecture model and tokenizer (no download);
2. prepare and validate data from the shipped chat sample (`phi data prepare`/`validate`);
3. fine-tune it with the real training script on the CPU into an MLflow model;
4. serve it behind OpenAI's chat-completions API (`phi serve`, the transformers engine, or
   vLLM with `--engine vllm`);
5. check that the server answers as the trained model does (`phi verify`);
6. connect the real chat flow to it (`phi flow connect`) and run it with a question and a
   chat history (`pf flow test`);
7. run the same chat on Microsoft Agent Framework (`flow/agent/chat.py`, from `.venv-agent`);
8. print the answers the fine-tuned model gave through both flows;
9. evaluate the base model against the fine-tuned one on the held-out split (`phi eval`)
   and print the table.

Every client stage speaks OpenAI's chat completions to the server.

Everything lives in one work directory, with a log per stage; Prompt flow's home and
keyring are inside it too, so the rehearsal touches nothing of yours. Every process it
starts is stopped when it ends, whether it succeeded or not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.core.folders import AGENT_CHAT, PROMPT_FLOW
from finetune_phi.data import SAMPLE, chat_format, prepare
from finetune_phi.local.agent_chat import AGENT_PYTHON_VARIABLE, agent_python
from finetune_phi.local.flow_connection import KEY_VARIABLE
from finetune_phi.local.processes import descends_from, stop_group
from finetune_phi.local.serve import (
    check_port,
    free_port,
    listening_process,
    server_command,
    wait_until_healthy,
)
from finetune_phi.serving import DEFAULT_ENGINE
from finetune_phi.serving.engine import CHAT_COMPLETIONS_PATH

STAGES = {
    "model": "building a tiny Phi-3 model and tokenizer offline",
    "data": "preparing and validating the chat sample",
    "train": "fine-tuning with the real training script (CPU)",
    "serve": "serving it behind OpenAI's chat-completions API",
    "verify": "does the server answer as the trained model does? (phi verify)",
    "flow": "connecting the chat flow and running it with a chat history",
    "agent": "the same chat on Microsoft Agent Framework (flow/agent/chat.py)",
    "answer": "answer from the fine-tuned model, through both flows",
    "eval": "did the fine-tune help? base against fine-tuned on the held-out split (phi eval)",
}
QUESTION = "Which river flows through it?"
HISTORY = [
    {
        "inputs": {"question": "What is the capital of France?"},
        "outputs": {"answer": "The capital of France is Paris."},
    }
]
# Enough for the tiny model to learn the sample's answer pattern in about a minute on 2 cores.
TRAINING_ARGS = (
    "--learning_rate",
    "3e-3",
    "--num_train_epochs",
    "12",
    "--max_length",
    "128",
    "--logging_steps",
    "6",
    "--activation_checkpointing",
    "false",
)


SERVER_START_SECONDS = 600
"""vLLM takes one to two minutes on two cores; the transformers engine a few seconds."""


def progress(line: str) -> None:
    """A line of the rehearsal's progress, shown at once even when stdout is a pipe (`phi
    rehearse | tee`), where Python would otherwise hold it back until a buffer fills."""
    print(line, flush=True)


class RehearsalError(PhiError):
    pass


@dataclass
class Rehearsal:
    work_dir: Path
    port: int
    engine: str = DEFAULT_ENGINE
    log: Callable[[str], None] = progress
    times: list[tuple[str, float]] = field(default_factory=list)
    server: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Offline, with Prompt flow's home and keyring inside the work directory."""
        return {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PF_HOME_DIRECTORY": str(self.work_dir / "promptflow"),
            "XDG_DATA_HOME": str(self.work_dir / "data-home"),
            "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        }

    def log_path(self, stage: str) -> Path:
        return self.work_dir / "logs" / f"{stage}.log"

    def run(self, stage: str, command: list[str], env: dict[str, str] | None = None) -> str:
        """Run a command of a stage, its output to the stage's log; its stdout back. Ctrl-C
        or SIGTERM stops it the way `phi` stops its own children: SIGTERM to its process
        group, which lets a `phi train` stop the training processes it started in turn."""
        process = subprocess.Popen(
            command,
            env=env or self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate()
        except BaseException:
            stop_group(process)
            raise
        result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
        with self.log_path(stage).open("a") as log:
            log.write(f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}\n")
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            shown = " ".join([Path(command[0]).name, *command[1:3]])
            raise RehearsalError(f"`{shown} ...` exited {result.returncode}: {' / '.join(tail)}")
        return result.stdout

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        self.log(f"[{len(self.times) + 1}/{len(STAGES)}] {STAGES[name]}{detail} ...")
        self.log_path(name).parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        try:
            yield
        except RehearsalError as error:
            raise RehearsalError(
                f"stage '{name}' failed: {error}\n  log: {self.log_path(name)}"
            ) from None
        except Exception as error:
            with self.log_path(name).open("a") as log:
                log.write(f"{type(error).__name__}: {error}\n")
            raise RehearsalError(
                f"stage '{name}' failed: {error}\n  log: {self.log_path(name)}"
            ) from error
        self.times.append((name, time.monotonic() - start))

    def phi(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "finetune_phi.cli", *args]

    def pf(self) -> str:
        """Prompt flow's `pf`, beside this Python or on PATH."""
        found = shutil.which("pf", path=str(Path(sys.executable).parent)) or shutil.which("pf")
        if found is None:
            raise RehearsalError(
                "Prompt flow's `pf` is not installed: install the flow extra "
                "(pip install 'finetune-phi[flow]') or run `make venv`"
            )
        return found

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_server(self, model: Path) -> None:
        command = self.phi("serve", "--model", str(model), "--port", str(self.port))
        with self.log_path("serve").open("a") as log:
            self.server = subprocess.Popen(
                [*command, "--engine", self.engine],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until_healthy(self.server, f"{self.url}/health", seconds=SERVER_START_SECONDS)
        holder = listening_process(self.port)
        if holder is not None and not descends_from(holder, self.server.pid):
            raise RehearsalError(
                f"port {self.port} answers, but from process {holder}, not the server the "
                "rehearsal started"
            )

    def stop_server(self) -> None:
        if self.server is not None:
            stop_group(self.server)
        self.server = None


def rehearse(
    work_dir: Path,
    port: int | None = None,
    log: Callable[[str], None] = progress,
    engine: str = DEFAULT_ENGINE,
) -> str:
    """Run the STAGES; returns the answer. Raises RehearsalError naming the stage and its log."""
    if port is not None:
        check_port(port)
    server_command(port or 1, engine=engine)  # a missing engine is named before any work
    try:
        if work_dir.exists() and any(work_dir.iterdir()):
            raise UsageError(f"--work-dir {work_dir}: not empty; pass another --work-dir")
        work_dir.mkdir(parents=True, exist_ok=True)
        pf_home = work_dir / "promptflow"
        pf_home.mkdir()
        (pf_home / "pf.yaml").write_text(
            "telemetry:\n  enabled: 'false'\ntrace:\n  destination: none\n"
        )
    except OSError as error:
        raise UsageError(
            f"--work-dir {work_dir}: cannot write there ({error.strerror or error})"
        ) from None
    r = Rehearsal(work_dir, port or free_port(), engine, log)
    log(f"work directory: {work_dir}")
    try:
        with r.stage("model"):
            base_model = build_base_model(work_dir / "base-model")
        with r.stage("data"):
            data = prepare_sample(work_dir / "data")
            log(f"      {data.train_rows} training and {data.eval_rows} eval conversations")
        with r.stage("train"):
            r.run("train", r.phi(*train_arguments(base_model, data, work_dir / "out")))
            metrics = json.loads((work_dir / "out" / "checkpoints" / "metrics.json").read_text())
            history = json.loads(
                (work_dir / "out" / "checkpoints" / "trainer_state.json").read_text()
            )["log_history"]
            losses = [entry["loss"] for entry in history if "loss" in entry]
            log(
                f"      loss {losses[0]:.2f} -> {losses[-1]:.2f}, {metrics['tokens_per_second']:,.0f} tokens/s; MLflow model in {work_dir / 'out' / 'model'}"
            )
        with r.stage("serve", f" ({engine}, port {r.port})"):
            r.start_server(work_dir / "out" / "model")
        with r.stage("verify"):
            verdict = r.run(
                "verify",
                r.phi(
                    *("verify", "--model", str(work_dir / "out" / "model"), "--served", r.url),
                    *("--data", str(data.eval), "--limit", "4"),
                ),
            )
            for line in verdict.splitlines():
                if line.startswith(("agreement:", "first-token")):
                    log(f"      {line}")
        with r.stage("flow"):
            endpoint = f"{r.url}{CHAT_COMPLETIONS_PATH}"
            r.run(
                "flow",
                r.phi("flow", "connect", "--endpoint", endpoint),
                env={**r.env, KEY_VARIABLE: "local"},
            )
            # A copy: `pf flow test` writes its run artifacts into the flow folder.
            flow = shutil.copytree(
                PROMPT_FLOW, work_dir / "flow", ignore=shutil.ignore_patterns("__pycache__", ".*")
            )
            output = r.run(
                "flow",
                [
                    r.pf(),
                    "flow",
                    "test",
                    "--flow",
                    str(flow),
                    # Greedy: the tiny model's most likely answer, the same on every run.
                    "--inputs",
                    f"question={QUESTION}",
                    f"chat_history={json.dumps(HISTORY)}",
                    "temperature=0",
                ],
            )
            match = re.search(r'\{\s*"answer":.*?\}', output, re.S)
            if match is None:
                raise RehearsalError("pf flow test printed no answer")
            answer = str(json.loads(match.group(0))["answer"])
        with r.stage("agent"):
            agent = agent_python()
            if agent is None:
                agent_answer = None
                log(
                    f"      skipped: no Agent Framework environment (make venv-agent, or ${AGENT_PYTHON_VARIABLE})"
                )
            else:
                output = r.run(
                    "agent",
                    [
                        str(agent),
                        str(AGENT_CHAT),
                        "--question",
                        QUESTION,
                        "--chat-history",
                        json.dumps(HISTORY),
                        "--temperature",
                        "0",
                        "--json",
                    ],
                    env={
                        **r.env,
                        "PHI_ENDPOINT_URL": endpoint,
                        "PHI_ENDPOINT_API": "chat-completions",
                    },
                )
                agent_answer = str(json.loads(output)["answer"])
        with r.stage("answer"):
            log(f"      Q (after: {HISTORY[0]['inputs']['question']!r}): {QUESTION}")
            log(f"      A (Prompt flow):     {answer}")
            if agent_answer is not None:
                same = "the same" if agent_answer == answer else "DIFFERENT"
                log(f"      A (Agent Framework): {agent_answer}   ({same})")
        with r.stage("eval"):
            table = r.run(
                "eval",
                r.phi(
                    "eval",
                    "--base",
                    str(base_model),
                    "--candidate",
                    str(work_dir / "out" / "model"),
                    "--data",
                    str(data.eval),
                    "--out",
                    str(work_dir / "eval"),
                    "--max-new-tokens",
                    "32",
                ),
            )
            for line in table.splitlines():
                if line.startswith("|"):
                    log(f"      {line}")
    finally:
        r.stop_server()
    total = sum(seconds for _, seconds in r.times)
    log("\n| stage | seconds |\n|---|---|")
    for name, seconds in r.times:
        log(f"| {name} | {seconds:.1f} |")
    log(f"| total | {total:.1f} |\nwork directory: {work_dir} (logs in {work_dir / 'logs'})")
    return answer


def build_base_model(out_dir: Path) -> Path:
    """The rehearsal's base model: a tiny Phi-3 with a tokenizer trained on the sample."""
    from finetune_phi.local.tiny_model import build

    texts = [m["content"] for messages in prepare.iter_messages(SAMPLE) for m in messages]
    return build(texts, out_dir)


def prepare_sample(out_dir: Path) -> prepare.Prepared:
    """The whole shipped sample, split and validated, as the rehearsal trains on it."""
    data = prepare.prepare(
        out_dir=out_dir, size=prepare.SampleSize(percent=100), seed=42, from_path=SAMPLE
    )
    for path in (data.train, data.eval):
        report = chat_format.validate_file(path)
        if not report.ok:
            raise RehearsalError(f"{path}: {report.problems[:3]}")
    return data


def train_arguments(base_model: Path, data: prepare.Prepared, out_dir: Path) -> list[str]:
    """`phi train --local` with the rehearsal's recipe (TRAINING_ARGS)."""
    return [
        "train",
        "--local",
        "--model",
        str(base_model),
        "--train-file",
        str(data.train),
        "--eval-file",
        str(data.eval),
        "--output-dir",
        str(out_dir),
        *TRAINING_ARGS,
    ]


def default_work_dir() -> Path:
    return Path(".phi") / f"rehearsal-{time.strftime('%Y%m%d-%H%M%S')}"
