"""Token-length statistics of a prepared chat file, with the chat template applied as
training applies it: how long conversations are, and how many exceed the training length."""

from __future__ import annotations

import statistics
from pathlib import Path

from finetune_phi.data import hub
from finetune_phi.data.prepare import iter_messages


def token_statistics(path: Path, tokenizer_name: str, max_length: int) -> str:
    """One line: min, median, mean, p95 and max tokens per conversation, and how many
    are over `max_length`."""
    from transformers import AutoTokenizer

    hub.require(tokenizer_name, "--tokenizer", "a local folder: --tokenizer DIR")
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    except OSError as error:
        raise hub.offline_failure(tokenizer_name, "--tokenizer", "--tokenizer DIR", error) from None
    lengths = sorted(
        len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
        for messages in iter_messages(path)
    )
    p95 = lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))]
    over = sum(length > max_length for length in lengths)
    return (
        f"{path}: tokens per conversation: min {lengths[0]}, median {statistics.median(lengths):g}, "
        f"mean {statistics.mean(lengths):.1f}, p95 {p95}, max {lengths[-1]}; "
        f"{over} over {max_length}"
    )
