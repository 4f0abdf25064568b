"""Shared fixtures: offline Hugging Face settings, the shipped sample, a tiny Phi-3 model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.pulumi_harness import ROOT

SAMPLE = ROOT / "jobs" / "data" / "samples" / "chat_sample.jsonl"

# Nothing here may reach a hub: fail fast instead of retrying for a minute.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


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
