"""Shared fixtures: offline Hugging Face settings, the shipped sample, a tiny Phi-3 model."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.pulumi_harness import ROOT

SAMPLE = ROOT / "jobs" / "data" / "samples" / "chat_sample.jsonl"

# Nothing here may reach a hub: fail fast instead of retrying for a minute.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def submit_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outputs: Mapping[str, object]
) -> Path:
    """A folder as `phi finetune submit` expects it: prepared data and saved stack outputs."""
    from jobs.data.prepare import SampleSize, prepare

    monkeypatch.chdir(tmp_path)
    prepare(out_dir=tmp_path / "data", size=SampleSize(rows=20), seed=42, from_path=SAMPLE)
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    return tmp_path


@pytest.fixture(scope="session")
def sample_texts() -> list[str]:
    return [
        message["content"]
        for line in SAMPLE.read_text().splitlines()
        for message in json.loads(line)["messages"]
    ]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, sample_texts: list[str]) -> Path:
    """A random-initialised Phi-3-architecture model and its tokenizer, built offline."""
    from jobs.tiny_model import build

    return build(sample_texts, tmp_path_factory.mktemp("tiny-phi3"))


@pytest.fixture(scope="session")
def fine_tuned(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model fine-tuned on the shipped sample by `phi train --local`: `model/` is
    the MLflow model, `checkpoints/` the trainer state and metrics."""
    from jobs.cli import main
    from jobs.data.prepare import SampleSize, prepare
    from jobs.rehearse import TRAINING_ARGS

    work = tmp_path_factory.mktemp("train")
    data = prepare(out_dir=work / "data", size=SampleSize(percent=100), seed=42, from_path=SAMPLE)
    code = main(
        [
            "train", "--local", "--model", str(tiny_model),
            "--train-file", str(data.train), "--eval-file", str(data.test),
            "--output-dir", str(work / "out"), *TRAINING_ARGS,
        ]
    )  # fmt: skip
    assert code == 0
    return work / "out"
