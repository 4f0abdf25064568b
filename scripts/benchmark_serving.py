"""Serving throughput of both engines, side by side, through OpenAI's chat-completions API.

    .venv/bin/python scripts/benchmark_serving.py              # a tiny Phi-3 on this CPU
    .venv/bin/python scripts/benchmark_serving.py --rounds 1 --concurrency 1,4 --requests 4
    # a GPU with the official vllm beside phi, on Phi-4-mini-instruct fine-tuned by `phi train`
    # (or the job's model output, downloaded):
    python scripts/benchmark_serving.py --model out/model --max-tokens 128 --requests 256
    # servers already running (both must serve the same model):
    .venv/bin/python scripts/benchmark_serving.py --served transformers=http://127.0.0.1:5001 \
        --served vllm=http://127.0.0.1:5002

Both engines serve the same MLflow model through `phi serve`'s own command (the front of
jobs/score/server.py): `transformers`, which answers one request at a time, and `vllm`, which
batches concurrent ones. For each number of concurrent clients the real `openai` client
streams `--requests` greedy chat completions (twice the clients at least) and records each
request's latency, its time to first token and its output tokens. The engines run
interleaved, their order swapped every round, and each figure is the median over the rounds:
this machine is shared, and single runs vary. Before measuring, each prompt's greedy answer
is asked of both engines once and compared.

Without --model the model is a random Phi-3 of hidden size 256, 4 layers and 4 heads of 64,
big enough that generation, not HTTP, dominates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark_scoring import (  # type: ignore[import-not-found]  # noqa: E402
    serving,
    tiny_mlflow_model,
)

from finetune_phi.core.errors import UsageError  # noqa: E402
from finetune_phi.data import SAMPLE  # noqa: E402
from finetune_phi.data.chat_format import read_jsonl  # noqa: E402

ENGINES = ("transformers", "vllm")
BENCHMARK_MODEL = {"hidden_size": 256, "layers": 4, "heads": 4}


@dataclass(frozen=True)
class Run:
    requests_per_s: float
    tokens_per_s: float
    p50_s: float
    p95_s: float
    ttft_p50_s: float


def prompts() -> list[list[dict[str, str]]]:
    """The shipped sample's conversations up to their last user turn."""
    return [row["messages"][:-1] for _, row, _ in read_jsonl(SAMPLE) if row is not None]


async def measure(
    base_url: str,
    conversations: list[list[dict[str, str]]],
    clients: int,
    requests: int,
    tokens: int,
) -> Run:
    import openai

    limit = asyncio.Semaphore(clients)
    latencies: list[float] = []
    first_tokens: list[float] = []
    generated = 0

    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:

        async def one(index: int) -> None:
            nonlocal generated
            async with limit:
                start = time.perf_counter()
                first = None
                messages: Any = conversations[index % len(conversations)]
                stream = await client.chat.completions.create(
                    model="phi",
                    messages=messages,
                    temperature=0,
                    max_tokens=tokens,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                async for chunk in stream:
                    if first is None and chunk.choices and chunk.choices[0].delta.content:
                        first = time.perf_counter() - start
                    if chunk.usage is not None:
                        generated += chunk.usage.completion_tokens
                latencies.append(time.perf_counter() - start)
                first_tokens.append(first if first is not None else latencies[-1])

        start = time.perf_counter()
        await asyncio.gather(*(one(index) for index in range(requests)))
        wall = time.perf_counter() - start
    latencies.sort()
    return Run(
        requests / wall,
        generated / wall,
        statistics.median(latencies),
        latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        statistics.median(first_tokens),
    )


async def greedy_answers(
    base_url: str, conversations: list[list[dict[str, str]]], tokens: int
) -> list[str]:
    import openai

    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        answers = []
        for conversation in conversations:
            messages: Any = conversation
            answer = await client.chat.completions.create(
                model="phi",
                messages=messages,
                temperature=0,
                max_tokens=tokens,
            )
            answers.append(str(answer.choices[0].message.content))
    return answers


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB"


def median_run(runs: list[Run]) -> Run:
    return Run(
        *(
            statistics.median(getattr(run, field) for run in runs)
            for field in Run.__dataclass_fields__
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an MLflow model folder (default: a tiny one)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="default: %(default)s")
    parser.add_argument("--concurrency", default="1,4,16,64", help="default: %(default)s")
    parser.add_argument("--requests", type=int, default=32, help="per run, at least 2 per client")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--served",
        action="append",
        default=[],
        metavar="ENGINE=URL",
        help="measure a server already running instead of starting one (repeatable)",
    )
    args = parser.parse_args()
    served = dict(pair.split("=", 1) for pair in args.served)
    if set(served) - set(ENGINES) or (served and args.model):
        parser.error(f"--served takes {' or '.join(ENGINES)}=URL, and no --model")
    engines = list(served) or [engine for engine in args.engines.split(",") if engine]
    concurrency = [int(clients) for clients in args.concurrency.split(",")]
    conversations = prompts()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as servers:
        model = args.model or (None if served else tiny_mlflow_model(Path(tmp), **BENCHMARK_MODEL))
        urls = {engine: f"{url.rstrip('/')}/v1" for engine, url in served.items()}
        for engine in engines if model else ():
            try:
                urls[engine] = f"{servers.enter_context(serving(model, engine))}/v1"
            except UsageError as error:
                print(f"{engine}: not measured: {error}")
        answers = {
            e: asyncio.run(greedy_answers(u, conversations, args.max_tokens))
            for e, u in urls.items()
        }
        runs: dict[tuple[str, int], list[Run]] = {}
        for round_ in range(args.rounds):
            for clients in concurrency:
                order = list(urls) if round_ % 2 == 0 else list(reversed(urls))
                for engine in order:
                    requests = max(args.requests, 2 * clients)
                    run = asyncio.run(
                        measure(urls[engine], conversations, clients, requests, args.max_tokens)
                    )
                    runs.setdefault((engine, clients), []).append(run)
    measured = (
        f"served at {', '.join(served.values())}"
        if served
        else model
        if args.model
        else "tiny Phi-3 (hidden 256, 4 layers, 4 heads of 64)"
    )
    print(
        f"\n{machine()}; {measured}; "
        f"greedy, {args.max_tokens} tokens at most; median of {args.rounds} interleaved rounds\n"
    )
    print(
        "| clients | engine | requests/s | output tokens/s | p50 latency (s) | p95 latency (s) | p50 time to first token (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for clients in concurrency:
        for engine in urls:
            run = median_run(runs[(engine, clients)])
            print(
                f"| {clients} | {engine} | {run.requests_per_s:.1f} | {run.tokens_per_s:.0f} | "
                f"{run.p50_s:.3f} | {run.p95_s:.3f} | {run.ttft_p50_s:.3f} |"
            )
    if len(urls) == 2:
        print()
        for clients in concurrency:
            ratio = (
                median_run(runs[("vllm", clients)]).requests_per_s
                / median_run(runs[("transformers", clients)]).requests_per_s
            )
            print(f"vllm / transformers at {clients} clients: {ratio:.1f}x requests/s")
        same = sum(a == b for a, b in zip(answers["transformers"], answers["vllm"], strict=True))
        print(
            f"greedy answers equal on {same} of {len(conversations)} prompts (an untrained "
            "model's near-ties round either way; `phi verify` tells those from real faults)"
        )


if __name__ == "__main__":
    main()
