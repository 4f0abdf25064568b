"""The local serving front (`phi serve`): OpenAI's chat-completions API on either engine, and
the scoring contract on the transformers engine, over one asynchronous HTTP server.

    AZUREML_MODEL_DIR=out/model python jobs/score/server.py --engine transformers --port 5001
    AZUREML_MODEL_DIR=out/model python jobs/score/server.py --engine vllm --port 5001 \\
        --vllm-python .venv-vllm/bin/python

Routes: `GET /` and `GET /health` (200 once the model is loaded), `GET /v1/models`,
`POST /v1/chat/completions` (`openai_api.py`), and on the transformers engine `POST /score`
(`contract.py`).

- transformers: `score.py`'s model in this process; one generation at a time, in a worker
  thread, so the event loop keeps answering probes and reading other requests.
- vllm: vLLM's own OpenAI server as a child process on a private loopback port. This front
  applies the chat template itself (`score.prompt_ids`, so a marker typed in a message stays
  text) and sends the token ids to vLLM's `/v1/completions`, which batches concurrent
  requests; answers come back as chat completions. PHI_VLLM_MAX_MODEL_LEN caps the context
  and PHI_VLLM_ARGS adds vLLM flags (a managed deployment sets both per instance type).
  The same front runs in the managed deployment (jobs/vllm/Dockerfile).

Every request is held to the limits in `contract.py` before any work: a body over
MAX_REQUEST_BYTES is refused from its Content-Length or as it arrives (413), and a body
that takes longer than BODY_SECONDS to arrive is dropped (408). Each connection is a
coroutine, so slow or idle clients hold no worker; idle keep-alive connections are closed
after KEEP_ALIVE_SECONDS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import openai_api  # type: ignore[import-not-found]
import score  # type: ignore[import-not-found]
from contract import MAX_REQUEST_BYTES, ContractError  # type: ignore[import-not-found]

logger = logging.getLogger("finetune_phi.server")
BODY_SECONDS = 10.0
DRAIN_BYTES = 4 * MAX_REQUEST_BYTES
DRAIN_SECONDS = 2.0
KEEP_ALIVE_SECONDS = 5
MAX_CONNECTIONS = 1000
"""Beyond this many open connections and requests, new ones get 503."""
VLLM_START_SECONDS = 600.0
VLLM_REQUEST_SECONDS = 600.0


class Engine:
    """What generates: `chat` for a whole answer, `stream` for its pieces."""

    model: str
    """The served model's name."""

    async def chat(self, request: Any) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, request: Any, identity: str) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedError

    async def score(self, raw: bytes) -> tuple[int, Any]:
        """The scoring contract's status and answer."""
        return 404, {"error": "the scoring contract is served by the transformers engine only"}

    def close(self) -> None:
        """Stop what it started."""


class TransformersEngine(Engine):
    def __init__(self, model_name: str) -> None:
        score.init()
        self.model = model_name
        self.lock = asyncio.Lock()
        """One generation at a time: batching happens within a request (n, the batch shape)."""

    async def chat(self, request: Any) -> dict[str, Any]:
        ids = score.prompt_ids(score._tokenizer, request.messages)
        async with self.lock:
            choices = await asyncio.to_thread(score.complete, ids, request)
        answer: dict[str, Any] = openai_api.completion(self.model, len(ids), choices)
        return answer

    async def stream(self, request: Any, identity: str) -> AsyncIterator[dict[str, Any]]:
        if request.n != 1:
            raise ContractError(
                "n above 1 cannot be streamed by the transformers engine", param="n"
            )
        ids = score.prompt_ids(score._tokenizer, request.messages)
        streamed = score.Streamed(ids, request)
        async with self.lock:
            pieces: Iterator[str] = iter(streamed)
            yield openai_api.chunk(identity, self.model, 0, {"role": "assistant", "content": ""})
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                yield openai_api.chunk(identity, self.model, 0, {"content": piece})
        yield openai_api.chunk(identity, self.model, 0, {}, streamed.choice.finish_reason)
        if request.include_usage:
            yield openai_api.usage_chunk(identity, self.model, len(ids), streamed.choice.tokens)

    async def score(self, raw: bytes) -> tuple[int, Any]:
        try:
            request = score.parse_request(raw)
            prompts = [score.prompt(m, request.parameters) for m in request.conversations]
        except ContractError as error:
            return error.status, {"error": str(error)}
        async with self.lock:
            answers = await asyncio.to_thread(score.generate, prompts, request.parameters)
        return 200, request.response(answers)


class VllmEngine(Engine):
    """vLLM's OpenAI server in a child process, fed token ids."""

    def __init__(self, model_name: str, python: str, model_dir: Path) -> None:
        import httpx
        from transformers import AutoConfig, AutoTokenizer

        _flavor, weights, tokenizer, config_folder = score.model_folders(
            score.find_mlflow_model(model_dir)
        )
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        config = AutoConfig.from_pretrained(config_folder)
        where = score.instance_type()
        limits = [(int(config.max_position_embeddings), "the model's context")]
        if os.environ.get("PHI_VLLM_MAX_MODEL_LEN"):  # what the GPU's KV cache holds
            limits.append((int(os.environ["PHI_VLLM_MAX_MODEL_LEN"]), f"vLLM's on {where}"))
        self.context = min(limits)
        self.model = model_name
        port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="phi-vllm-", suffix=".log")[1])
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    *(python, "-m", "vllm.entrypoints.openai.api_server"),
                    *("--model", str(weights), "--tokenizer", str(tokenizer)),
                    *("--served-model-name", model_name, "--max-model-len", str(self.context[0])),
                    *("--host", "127.0.0.1", "--port", str(port)),
                    *("--disable-log-stats", "--disable-uvicorn-access-log"),
                    *("--uvicorn-log-level", "warning"),
                    *vllm_arguments(config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **vllm_environment()},
            )
        self.base = f"http://127.0.0.1:{port}"
        try:
            self.wait_until_ready()
        except KeyboardInterrupt:  # stopped while vLLM loads: nothing of it stays behind
            self.stop()
            raise
        self.client = httpx.AsyncClient(
            base_url=self.base, timeout=VLLM_REQUEST_SECONDS, follow_redirects=False
        )

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + VLLM_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
                raise SystemExit(
                    f"phi serve: error: vLLM exited with {self.process.returncode} while "
                    f"loading; its log is {self.log}:\n  " + "\n  ".join(tail)
                )
            health = f"{self.base}/health"
            with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=5) as answer:  # noqa: S310 - our own child
                if answer.status == 200:
                    return
            time.sleep(1)
        self.close()
        raise SystemExit(
            f"phi serve: error: vLLM was not ready in {VLLM_START_SECONDS:g} s; log {self.log}"
        )

    def completions_body(self, request: Any, ids: list[int]) -> dict[str, Any]:
        score.check_context(ids, request.max_tokens, self.context)
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": ids,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "n": request.n,
            "stop": list(request.stop),
            "stream": request.stream,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.logprobs:
            body["logprobs"] = request.top_logprobs
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def chat(self, request: Any) -> dict[str, Any]:
        ids = score.prompt_ids(self.tokenizer, request.messages)
        answer = await self.client.post("/v1/completions", json=self.completions_body(request, ids))
        await passed_on(answer)
        body = answer.json()
        result: dict[str, Any] = openai_api.completion(
            self.model,
            body["usage"]["prompt_tokens"],
            [
                openai_api.Choice(
                    c["text"],
                    c["finish_reason"] or "stop",
                    0,
                    chat_logprobs(c.get("logprobs"), request.top_logprobs),
                )
                for c in sorted(body["choices"], key=lambda c: c["index"])
            ],
        )
        result["usage"] = body["usage"]
        return result

    async def stream(self, request: Any, identity: str) -> AsyncIterator[dict[str, Any]]:
        ids = score.prompt_ids(self.tokenizer, request.messages)
        body = self.completions_body(request, ids)
        started: set[int] = set()
        async with self.client.stream("POST", "/v1/completions", json=body) as answer:
            await passed_on(answer)
            async for line in answer.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line.removeprefix("data: "))
                for c in event.get("choices") or []:
                    index = c["index"]
                    if index not in started:
                        started.add(index)
                        yield openai_api.chunk(
                            identity, self.model, index, {"role": "assistant", "content": ""}
                        )
                    if c.get("text"):
                        yield openai_api.chunk(identity, self.model, index, {"content": c["text"]})
                    if c.get("finish_reason"):
                        yield openai_api.chunk(identity, self.model, index, {}, c["finish_reason"])
                if event.get("usage") and request.include_usage:
                    usage = event["usage"]
                    yield openai_api.usage_chunk(
                        identity, self.model, usage["prompt_tokens"], usage["completion_tokens"]
                    )

    def close(self) -> None:
        """Stop vLLM; its log goes too, unless vLLM had stopped by itself (then it says why)."""
        if self.process.poll() is not None:
            print(f"phi serve: vLLM had stopped; its log is {self.log}", file=sys.stderr)
            return
        self.stop()

    def stop(self) -> None:
        """Stop vLLM (if it still runs) and delete its log."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.unlink(missing_ok=True)


def chat_logprobs(completion: Any, top: int) -> list[dict[str, Any]] | None:
    """vLLM's completions `logprobs` (tokens, token_logprobs, top_logprobs) as the chat
    API's `logprobs.content`."""
    if not completion:
        return None
    entries = []
    for token, logprob, alternatives in zip(
        completion["tokens"],
        completion["token_logprobs"],
        completion.get("top_logprobs") or [{}] * len(completion["tokens"]),
        strict=True,
    ):
        best = sorted((alternatives or {}).items(), key=lambda item: -item[1])[:top]
        entries.append(openai_api.token_logprob(token, logprob, best))
    return entries


async def passed_on(answer: Any) -> None:
    """vLLM's refusal (its status and message) as ours; nothing if it answered 200."""
    if answer.status_code == 200:
        return
    await answer.aread()
    try:
        message = answer.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = answer.text[:500]
    raise EngineError(answer.status_code, f"vLLM: {message}")


def vllm_arguments(config: Any) -> list[str]:
    """PHI_VLLM_ARGS, and the model's own dtype unless they name one: vLLM's `auto` serves
    a float32 model in bfloat16 (on a CPU too), so its answers would not be the trained
    model's (`phi verify`). A managed deployment sets --dtype per GPU."""
    extra = shlex.split(os.environ.get("PHI_VLLM_ARGS", ""))
    if any(word == "--dtype" or word.startswith("--dtype=") for word in extra):
        return extra
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    return [*extra, "--dtype", str(dtype).removeprefix("torch.")] if dtype else extra


def vllm_environment() -> dict[str, str]:
    """vLLM on this machine: offline, no usage report, and on a CPU a KV cache of a size
    that leaves the machine usable (by default it takes nearly all memory)."""
    return {
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "VLLM_LOGGING_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EngineError(BodyError):
    """The engine refused or failed a request: its status and message, passed on."""


async def read_body(receive: Any, headers: dict[bytes, bytes]) -> bytes:
    """The request body, refused as soon as it is known to be too large or too slow.

    A body declared too large is refused before it is read; one of up to DRAIN_BYTES is read
    and dropped for up to DRAIN_SECONDS first, since most clients send the whole body before
    they read the answer and would otherwise see a broken pipe instead of the 413.
    """
    declared = headers.get(b"content-length", b"")
    size = int(declared) if declared.isdigit() else None
    if declared and size is None:
        raise BodyError(
            400, f"Content-Length {declared.decode(errors='replace')!r} is not a number"
        )
    if size is not None and size > MAX_REQUEST_BYTES:
        if size <= DRAIN_BYTES:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_SECONDS):
                    while (await receive()).get("more_body"):
                        pass
        raise BodyError(413, f"the body is {size} bytes; at most {MAX_REQUEST_BYTES}")
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_SECONDS):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise BodyError(400, "the client went away")
                body += message.get("body", b"")
                if len(body) > MAX_REQUEST_BYTES:
                    raise BodyError(413, f"the body is over {MAX_REQUEST_BYTES} bytes")
                if not message.get("more_body"):
                    return bytes(body)
    except TimeoutError:
        raise BodyError(408, f"the body did not arrive within {BODY_SECONDS:g} s") from None


class Front:
    """The ASGI application."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.created = int(time.time())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        headers = dict(scope["headers"])
        try:
            if path in ("/", "/health") and method in ("GET", "HEAD"):
                await self.reply(send, 200, {"status": "ready"})
            elif path == "/v1/models" and method == "GET":
                await self.reply(send, 200, openai_api.models_list(self.engine.model, self.created))
            elif path == "/v1/chat/completions" and method == "POST":
                await self.chat(send, await read_body(receive, headers))
            elif path == "/score" and method == "POST":
                await self.reply(send, *await self.engine.score(await read_body(receive, headers)))
            elif path in ("/", "/health", "/v1/models", "/v1/chat/completions", "/score"):
                await self.error(send, path, 405, f"{method} {path} is not served here")
            else:
                await self.error(send, path, 404, f"no route {path}")
        except BodyError as error:  # EngineError too: the engine's status and message
            await self.error(send, path, error.status, str(error))
        except ContractError as error:
            await self.error(send, path, error.status, str(error), error.param, error.code)
        except Exception:  # a bug answers 500, logged once; the server stays up
            logger.exception("%s %s failed", method, path)
            await self.error(send, path, 500, "the server failed on this request; its log says why")

    async def chat(self, send: Any, raw: bytes) -> None:
        request = openai_api.parse_chat_request(raw, self.engine.model)
        if not request.stream:
            await self.reply(send, 200, await self.engine.chat(request))
            return
        identity = openai_api.completion_id()
        events = self.engine.stream(request, identity)
        first = await anext(events)  # a refusal still gets its status, not a broken stream
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": sse(first), "more_body": True})
        async for event in events:
            await send({"type": "http.response.body", "body": sse(event), "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    @staticmethod
    async def reply(send: Any, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def error(
        self,
        send: Any,
        path: str,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        """The error in the route's own shape: the scoring contract's at /score, OpenAI's
        elsewhere."""
        body = (
            {"error": message}
            if path == "/score"
            else openai_api.error_body(message, status, param, code)
        )
        await self.reply(send, status, body)


def sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise SystemExit(
            f"phi serve: error: --port {port}: cannot listen on {host}: {error.strerror}"
        ) from None
    return sock


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="server.py", allow_abbrev=False)
    parser.add_argument("--engine", choices=("transformers", "vllm"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", default="phi")
    parser.add_argument("--vllm-python", default=sys.executable)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sock = listening_socket(args.host, args.port)  # a busy port is named before loading
    signal.signal(signal.SIGTERM, interrupted)  # uvicorn has its own once it runs
    engine: Engine | None = None
    try:
        model_dir = Path(os.environ["AZUREML_MODEL_DIR"])
        engine = (
            TransformersEngine(args.served_model_name)
            if args.engine == "transformers"
            else VllmEngine(args.served_model_name, args.vllm_python, model_dir)
        )
        import uvicorn

        config = uvicorn.Config(
            Front(engine),
            log_level="warning",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            limit_concurrency=MAX_CONNECTIONS,
            lifespan="off",
        )
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        if engine is not None:
            engine.close()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
