"""Token-length statistics of a chat or preference data file, with the chat template applied
as training applies it: how long conversations are (of a pair, the prompt with each answer,
what DPO's `max_length` counts), and how many exceed the training length."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from finetune_phi.data import hub
from finetune_phi.data.chat_format import read_rows
from finetune_phi.data.preference_format import normalize
from finetune_phi.data.prepare import iter_messages


def _tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    hub.require(name, "--tokenizer", "a local folder: --tokenizer DIR")
    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as error:
        raise hub.offline_failure(name, "--tokenizer", "--tokenizer DIR", error) from None


def _tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    return len(
        tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    )


def _summary(what: str, lengths: list[int], max_length: int) -> str:
    lengths = sorted(lengths)
    p95 = lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))]
    over = sum(length > max_length for length in lengths)
    return (
        f"tokens per {what}: min {lengths[0]}, median {statistics.median(lengths):g}, "
        f"mean {statistics.mean(lengths):.1f}, p95 {p95}, max {lengths[-1]}; "
        f"{over} over {max_length}"
    )


def token_statistics(path: Path, tokenizer_name: str, max_length: int) -> str:
    """One line: min, median, mean, p95 and max tokens per conversation, and how many
    are over `max_length`."""
    tokenizer = _tokenizer(tokenizer_name)
    lengths = [_tokens(tokenizer, messages) for messages in iter_messages(path)]
    return f"{path}: {_summary('conversation', lengths, max_length)}"


def pair_statistics(path: Path, tokenizer_name: str, max_length: int) -> str:
    """The same for preference pairs, as DPO reads them: the prompt with the chosen answer,
    and the prompt with the rejected one (`max_length` is DPOConfig's, for both)."""
    tokenizer = _tokenizer(tokenizer_name)
    chosen, rejected = [], []
    for _, row, error in read_rows(path):
        if error is None and isinstance(row, dict):
            pair = normalize(row)
            chosen.append(_tokens(tokenizer, pair["prompt"] + pair["chosen"]))
            rejected.append(_tokens(tokenizer, pair["prompt"] + pair["rejected"]))
    return (
        f"{path}: prompt + chosen: {_summary('pair', chosen, max_length)}\n"
        f"{path}: prompt + rejected: {_summary('pair', rejected, max_length)}"
    )
