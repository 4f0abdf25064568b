"""Held-out conversations as evaluation rows: the prompt is the conversation up to its last
assistant turn, the reference is that turn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from finetune_phi.data import chat_format


@dataclass(frozen=True)
class EvalRow:
    line: int
    prompt: list[dict[str, str]]
    reference: str


def read_rows(path: Path, limit: int | None = None) -> list[EvalRow]:
    """Every row of a chat JSONL file (as `phi data prepare` writes eval_data.jsonl), or
    UsageError naming each bad line as FILE:LINE."""
    chat_format.require_chat_jsonl(path, "--data")
    rows = [
        EvalRow(number, row["messages"][:-1], row["messages"][-1]["content"])
        for number, row, _ in chat_format.read_jsonl(path)
        if row is not None
    ]
    return rows[:limit] if limit else rows
