"""Scoring throughput: 16 questions in one request against 16 requests of one question.

    .venv/bin/python scripts/benchmark_scoring.py                 # tiny model, this CPU
    .venv/bin/python scripts/benchmark_scoring.py --repeats 9 --max-new-tokens 64

The real scoring server (`score.py` under azureml-inference-server-http, as `phi serve` runs
it) serves the rehearsal's tiny Phi-3, built on the spot and saved as an MLflow model. The
batch shape's questions are generated in one batched call; one question per request is
what a client without the batch shape pays. Greedy decoding, so both give the same answers
(the script checks it in fp32, on a CPU). It prints the median wall time of each over the
repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finetune_phi.core.folders import TRAIN_SOURCE  # noqa: E402
from finetune_phi.data import SAMPLE  # noqa: E402
from finetune_phi.local.processes import stop_group  # noqa: E402
from finetune_phi.local.serve import (  # noqa: E402
    free_port,
    server_command,
    server_environment,
    wait_until_healthy,
)
from finetune_phi.local.tiny_model import build  # noqa: E402
from jobs.score.contract import MAX_BATCH  # noqa: E402


def tiny_mlflow_model(work: Path, **size: int) -> Path:
    """The rehearsal's tiny Phi-3 (or one of `size`), untrained, as the MLflow model the
    server loads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sys.path.insert(0, str(TRAIN_SOURCE))
    from train import save_mlflow_model  # type: ignore[import-not-found]  # the job's own

    texts = [
        m["content"]
        for line in SAMPLE.read_text().splitlines()
        for m in json.loads(line)["messages"]
    ]
    folder = build(texts, work / "tiny", **size)
    model = AutoModelForCausalLM.from_pretrained(folder)
    save_mlflow_model(model, AutoTokenizer.from_pretrained(folder), work / "model", str(folder))
    return work / "model"


@contextlib.contextmanager
def serving(model: Path, engine: str = "transformers") -> Iterator[str]:
    """`phi serve --engine ENGINE`'s own command on a free port, until the block ends; its
    base URL."""
    port = free_port()
    process = subprocess.Popen(
        server_command(port, engine=engine),
        env=server_environment(model, engine),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_healthy(process, f"http://127.0.0.1:{port}/health", seconds=900)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(process)


def ask(url: str, questions: list[str], max_new_tokens: int) -> list[str]:
    body = {
        "input_data": questions,
        "params": {"do_sample": False, "max_new_tokens": max_new_tokens},
    }
    request = urllib.request.Request(  # noqa: S310 - our own local server
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310 - our local server
        answers: list[str] = json.loads(response.read())
    return answers


def timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    questions = [f"Question {n}: what should I see in city number {n}?" for n in range(MAX_BATCH)]
    with tempfile.TemporaryDirectory() as tmp, serving(tiny_mlflow_model(Path(tmp))) as base:
        url = f"{base}/score"

        def batched() -> list[str]:
            return ask(url, questions, args.max_new_tokens)

        def one_by_one() -> list[str]:
            return [ask(url, [q], args.max_new_tokens)[0] for q in questions]

        batched(), one_by_one()  # warm-up: first requests pay for lazy initialisation
        batch_times, single_times, same = [], [], True
        for _ in range(args.repeats):
            seconds, batch_answers = timed(batched)
            batch_times.append(seconds)
            seconds, single_answers = timed(one_by_one)
            single_times.append(seconds)
            same = same and batch_answers == single_answers
    batch, single = statistics.median(batch_times), statistics.median(single_times)
    print(
        f"\n{MAX_BATCH} questions, greedy, {args.max_new_tokens} new tokens at most, "
        f"median of {args.repeats}\n"
    )
    print("| requests | wall time (s) |\n|---|---|")
    print(f"| 1 request of {MAX_BATCH} questions (batched) | {batch:.3f} |")
    print(f"| {MAX_BATCH} requests of 1 question | {single:.3f} |")
    print(f"\nbatched / one by one: {single / batch:.1f}x faster; same answers: {same}")
    if not same and not torch.cuda.is_available():
        # In fp32 padding changes no number; on a GPU the server runs in half precision,
        # where a padded batch can round a near-tie the other way.
        raise SystemExit("error: batched answers differ from one-by-one answers in fp32")


if __name__ == "__main__":
    main()
