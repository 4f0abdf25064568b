"""Helpers the test modules share (fixtures built on them live in conftest.py).

Test modules import from here and from the stand-ins for Azure (`contract_server`,
`arm_server`, `pulumi_harness`), never from one another.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from finetune_phi.core.folders import PROMPT_FLOW
from finetune_phi.data import SAMPLE

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PHI = [sys.executable, "-m", "finetune_phi.cli"]
AGENT_PYTHON = ROOT / ".venv-agent" / "bin" / "python"
"""The Agent Framework environment's Python (`make venv-agent`)."""
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
"""The vLLM environment's Python (`make venv-vllm`)."""

__all__ = ["BIN", "PHI", "PROMPT_FLOW", "ROOT", "SAMPLE"]

ACCEPTED_RISK = ("--accept-safety-risk", "a test of the rollout, not of the model")
"""`phi deploy`'s override of the safety gate, for tests of what comes after it."""
EXAMPLE_OUTPUTS: dict[str, object] = {
    "subscriptionId": "sub-1",
    "resourceGroupName": "rg-phi-dev",
    "workspaceName": "mlw-phi-dev",
    "gpuComputeName": "gpu-phidev",
    "location": "eastus2",
    "environment": "dev",
    "foundryProjectName": "proj-phi-dev",
    "foundryProjectWorkspaceId": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "endpointName": "phi-dev-abc123",
    "identityClientId": "client-of-id-phi-dev",
}
"""Stack outputs of a dev stack with every switch on, as `pulumi stack output --json` prints."""


def send_json(
    handler: BaseHTTPRequestHandler, status: int, headers: Mapping[str, str], body: Any
) -> None:
    """A stand-in server's JSON answer: status, headers, and the body with its length."""
    payload = json.dumps(body).encode()
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def submit_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outputs: Mapping[str, object]
) -> Path:
    """A folder as `phi finetune submit` expects it: prepared data and saved stack outputs."""
    from finetune_phi.data.prepare import SampleSize, prepare

    monkeypatch.chdir(tmp_path)
    prepare(out_dir=tmp_path / "data", size=SampleSize(rows=20), seed=42, from_path=SAMPLE)
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    return tmp_path


def isolated_promptflow(tmp_path: Path) -> dict[str, str]:
    """Variables for an isolated Prompt flow home: no telemetry, no tracing service, a file
    keyring."""
    home = tmp_path / "pf-home"
    home.mkdir()
    (home / "pf.yaml").write_text(
        yaml.safe_dump({"telemetry": {"enabled": "false"}, "trace": {"destination": "none"}})
    )
    return {
        "PF_HOME_DIRECTORY": str(home),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
    }


def connect(
    endpoint: str, key: str, env: dict[str, str], api: str = "score", cwd: Path | None = None
) -> None:
    """`phi flow connect` in its own process (Prompt flow fixes its home at first import),
    run in `cwd`, by default beside the test's Prompt flow home: it writes the project's
    `pf.yaml` there, above the flow `flow_copy` puts there."""
    result = subprocess.run(
        [str(BIN / "phi"), "flow", "connect", "--endpoint", endpoint, "--api", api],
        env={**env, "PHI_ENDPOINT_KEY": key},
        cwd=cwd or Path(env["PF_HOME_DIRECTORY"]).parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert key not in result.stdout + result.stderr


def flow_copy(env: Mapping[str, str]) -> Path:
    """A copy of the Prompt flow folder beside the test's Prompt flow home (`pf` writes run
    artifacts and Python caches into the folder it runs)."""
    copy = Path(env["PF_HOME_DIRECTORY"]).parent / "flow"
    if not copy.exists():
        shutil.copytree(PROMPT_FLOW, copy, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    return copy


def flow_test_command(env: Mapping[str, str], question: str, history: list[Any]) -> list[str]:
    """`pf flow test` of a copy of the flow with a question and a chat history."""
    return [
        str(BIN / "pf"),
        "flow",
        "test",
        "--flow",
        str(flow_copy(env)),
        "--inputs",
        f"question={question}",
        f"chat_history={json.dumps(history)}",
    ]


def flow_test(
    env: dict[str, str], question: str, history: list[Any]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        flow_test_command(env, question, history),
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def answer_of(result: subprocess.CompletedProcess[str]) -> str:
    match = re.search(r'\{\s*"answer":.*?\}', result.stdout, re.S)
    assert match, result.stdout + result.stderr
    return str(json.loads(match.group(0))["answer"])


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def no_process_mentions(text: str) -> bool:
    """True when no process but this test run itself (and `ps`) has `text` in its command line."""
    result = subprocess.run(
        ["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True, check=True
    )
    me = str(os.getpid())
    return not any(
        text in args and pid != me and not args.startswith("ps ")
        for pid, _, args in (line.strip().partition(" ") for line in result.stdout.splitlines())
    )


@dataclass(frozen=True)
class Rehearsal:
    """One `phi rehearse` run, in its own process: its result and its work directory."""

    result: subprocess.CompletedProcess[str]
    work: Path


def install_wheel(work: Path) -> None:
    """Build this checkout's wheel and install it into a fresh virtual environment,
    `work/venv`, outside the checkout.

    The wheel is built from a copy of the tracked files, so the checkout gets no build
    output. The environment borrows this one's third-party packages through a path file,
    but not its editable install of this project: a path file's own path files are never
    read, so `finetune_phi` and the folders it carries come from the wheel alone.
    """
    source = work / "source"
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(source)],
        check=True,
        capture_output=True,
    )
    [wheel] = (work / "dist").glob("finetune_phi-*.whl")
    fresh = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    [site_packages] = fresh.glob("lib/python*/site-packages")
    (site_packages / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            *pip,
            "--python",
            str(fresh / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` answering on a free loopback port, in a thread: the server's base URL
    (`http://127.0.0.1:PORT`); shut down and its port closed when the block ends. It looks for
    the shutdown every 50 ms (the default 0.5 s adds up to half a second to every test)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def raw_server(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback TCP server that hands each connection to `answer` (which may misbehave:
    drip, reset, hang up); stopped, with its connections, when the block ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    connections: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connections.append(connection)
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/score"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.close()


def read_request(connection: socket.socket) -> bytes:
    """The request's head and body, read as far as Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class NoManagedIdentity(BaseHTTPRequestHandler):
    """App Service's managed-identity endpoint on a machine that has no identity: it answers
    at once with 400, where a closed port costs azure-identity's connection retries (about
    five seconds a command)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"statusCode": 400, "message": "No managed identity found."}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def without_azure_sign_in(home: Path, identity_endpoint: str) -> dict[str, str]:
    """An environment with no Azure sign-in of any kind, for `phi` in a subprocess: no
    variables, no CLI, and managed identity asked at a local stand-in (`NoManagedIdentity`),
    never Azure's."""
    return {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(home),
        "IDENTITY_ENDPOINT": f"{identity_endpoint}/token",
        "IDENTITY_HEADER": "x",
        "HF_HUB_OFFLINE": "1",
    }


def assert_one_sign_in_line(result: subprocess.CompletedProcess[str]) -> None:
    """`phi` said in one line how to sign in, and nothing else (no SDK log): exit 2."""
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("phi: error: no Azure credentials: run `az login`")


@contextlib.contextmanager
def serving(
    model: Path,
    engine: str = "transformers",
    seconds: float = 120,
    environment: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """`phi serve --engine ENGINE` on an MLflow model, with `environment` added to this
    one's; stopped as a user would stop it (SIGTERM to phi serve), and its port checked free
    afterwards."""
    from finetune_phi.local.processes import stop_group
    from finetune_phi.local.serve import free_port, wait_until_healthy

    port = free_port()
    process = subprocess.Popen(
        [*PHI, "serve", "--model", str(model), "--port", str(port), "--engine", engine],
        env={**os.environ, **(environment or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(process, f"{url}/health", seconds=seconds)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        stop_group(process)
    assert port_is_free(port)


def built_once(path: Path, build: Callable[[Path], object]) -> Path:
    """`path`, built by `build(path)` the first time any worker of this test run asks for it;
    the others wait for it (a file lock) and reuse it. It is built in place (a virtual
    environment cannot move), and counts as built once `build` returned: a failed build is
    started afresh by the next worker that asks."""
    from filelock import FileLock

    done = path.with_name(f"{path.name}.built")
    with FileLock(f"{path}.lock"):
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            build(path)
            done.touch()
    return path


def build_tiny_model(out: Path) -> None:
    """The rehearsal's base model, built in-process."""
    from finetune_phi.local.rehearse import build_base_model

    build_base_model(out)


def train_like_the_rehearsal(base_model: Path, out: Path) -> None:
    """`phi train --local` on the shipped sample with the rehearsal's recipe, into `out`
    (`out/model` the MLflow model, `out/checkpoints` the trainer state, `out/data` the split,
    `out/mlruns` the MLflow store). Run as a user runs it from the folder above both: the model
    and the output given as relative folders, no MLflow variable set. What it printed is kept
    in `out/stdout.txt` and `out/stderr.txt`."""
    from finetune_phi.local.rehearse import prepare_sample, train_arguments

    data = prepare_sample(out / "data")
    arguments = train_arguments(Path(os.path.relpath(base_model, out.parent)), data, Path(out.name))
    result = subprocess.run(
        [*PHI, *arguments],
        cwd=out.parent,
        env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        capture_output=True,
        text=True,
        check=False,
    )
    (out / "stdout.txt").write_text(result.stdout)
    (out / "stderr.txt").write_text(result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]


def catalog_layout(ours: Path, out: Path) -> Path:
    """Our MLflow model folder (mlflow.transformers) rewritten as the catalog pipeline saves a
    registry Phi model's fine-tune: the hftransformersv2 flavor, with the weights, tokenizer
    and config under data/ (azureml-assets finetune_acft_hf_nlp model_selector.py)."""
    import yaml

    shutil.copytree(ours / "model", out / "data" / "model")
    shutil.copytree(ours / "components" / "tokenizer", out / "data" / "tokenizer")
    (out / "data" / "config").mkdir()
    shutil.copy(ours / "model" / "config.json", out / "data" / "config")
    flavor = {
        "hf_config_class": "AutoConfig",
        "hf_pretrained_class": "AutoModelForCausalLM",
        "hf_tokenizer_class": "AutoTokenizer",
        "model_data": "data",
        "task_type": "chat-completion",
    }
    pyfunc = {"loader_module": "azureml.evaluate.mlflow.hftransformers", "data": "data"}
    (out / "MLmodel").write_text(
        yaml.safe_dump({"flavors": {"hftransformersv2": flavor, "python_function": pyfunc}})
    )
    return out


def hub_layout(repo: Path, split: str, rows: list[Any]) -> Path:
    """A local dataset folder laid out as the hub lays one out (a Parquet shard per split and
    a dataset card naming it), so that the hub code path runs offline on `rows`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (repo / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), repo / "data" / f"{split}-00000-of-00001.parquet")
    (repo / "README.md").write_text(
        f"---\ndataset_info:\n  splits:\n  - name: {split}\n    num_bytes: 1\n"
        f"    num_examples: {len(rows)}\nconfigs:\n- config_name: default\n  data_files:\n"
        f"  - split: {split}\n    path: data/{split}-*\n---\n"
    )
    return repo
