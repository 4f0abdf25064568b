"""The preference format DPO trains on: TRL's conversational preference format.

A row is a JSON object with
- `prompt`: the conversation so far, a list of messages ending in a user turn;
- `chosen` and `rejected`: each a list of one assistant message, the better and the worse
  answer to that prompt.

TRL's "implicit prompt" spelling is accepted too: `chosen` and `rejected` as whole
conversations that share every message but their last, an assistant turn (with `prompt`
left out, or a string beside them, as in HuggingFaceH4/ultrafeedback_binarized); `normalize`
turns it into the explicit one, which is what `phi data prepare --task preference` writes.
The messages follow the chat format's rules (`chat_format.messages_problems`): roles, a
system message first only, non-empty text, no chat-template markers. The two answers must
differ. Other keys (a dataset's scores, ids) are allowed and ignored.
"""

from __future__ import annotations

from typing import Any

from finetune_phi.data.chat_format import messages_problems

TASKS = ("chat", "preference")
"""What a data file is for: SFT's chat rows, or DPO's preference rows."""
TRAIN_FILE = "train_pairs.jsonl"
EVAL_FILE = "eval_pairs.jsonl"
"""What `phi data prepare --task preference` writes: beside the chat files, never over them."""
DEFAULT_DATASET = "HuggingFaceH4/ultrafeedback_binarized"
DEFAULT_SPLIT = "train_prefs"
"""The default hub source of pairs: UltraFeedback binarized (the pairs Zephyr-7B-beta was
DPO-trained on), MIT licence, 61,135 pairs in `train_prefs` (2,000 in `test_prefs`); each row
a string `prompt`, `chosen` and `rejected` as whole [user, assistant] conversations (TRL's
implicit spelling), and a `messages` column that repeats `chosen`, which is ignored (its dataset
card, huggingface.co/datasets/HuggingFaceH4/ultrafeedback_binarized README.md at revision
2a3fb934, read 2026-12-05; an earlier revision listed 61,966).
TRL's own examples use trl-lib/ultrafeedback_binarized (62.1k rows in `train`, conversational
with the prompt implicit, per its viewer and TRL's reward-trainer page); `--dataset
trl-lib/ultrafeedback_binarized --split train` reads it the same way."""


def conversation(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Every message of a valid chat or preference row, each once: what screening reads. A
    preference row's prompt, then its chosen and its rejected answer (a `messages` column
    beside them, as UltraFeedback's, is not what DPO reads, and is left out)."""
    if task_of(row) == "preference":
        pair = normalize(row)
        return [*pair["prompt"], *pair["chosen"], *pair["rejected"]]
    return list(row.get("messages") or [])


def row_problems(row: Any) -> list[str]:
    """Every reason `row` is not a valid preference row; empty when it is."""
    if not isinstance(row, dict):
        return [f"expected a JSON object, got {type(row).__name__}"]
    if "messages" in row and not {"chosen", "rejected"} & set(row):
        return [
            'a chat row ({"messages": [...]}), not a preference row: preference rows have '
            "prompt, chosen and rejected"
        ]
    missing = [key for key in ("chosen", "rejected") if key not in row]
    if missing:
        return [f"'{missing[0]}' is missing: a preference row has prompt, chosen and rejected"]
    if any(isinstance(row[key], str) for key in ("chosen", "rejected")):
        return [
            "chosen and rejected are plain text (TRL's standard format); pairs here are "
            "conversational: 'prompt' a list of messages ending in a user turn, 'chosen' and "
            "'rejected' one assistant message each"
        ]
    if "prompt" in row and not isinstance(row["prompt"], str):
        return _explicit_problems(row)
    return _implicit_problems(row)


def _explicit_problems(row: dict[str, Any]) -> list[str]:
    problems = messages_problems(row["prompt"], "prompt", last="user")
    for key in ("chosen", "rejected"):
        answer = row[key]
        if isinstance(answer, list) and len(answer) != 1:
            problems.append(f"'{key}' must hold one assistant message, not {len(answer)}")
            continue
        problems += messages_problems(answer, key, needs_user=False)
    if not problems and _text(row["chosen"][0]) == _text(row["rejected"][0]):
        problems.append("chosen and rejected are the same answer: nothing to prefer")
    return problems


def _implicit_problems(row: dict[str, Any]) -> list[str]:
    if "prompt" in row and not all(_has_user(row[key]) for key in ("chosen", "rejected")):
        return [
            "'prompt' is a string but an answer holds no user message: give 'prompt' as a "
            "list of messages ending in a user turn, or chosen and rejected as whole "
            "conversations"
        ]
    problems = []
    for key in ("chosen", "rejected"):
        problems += messages_problems(row[key], key)
    if problems:
        return problems
    chosen, rejected = row["chosen"], row["rejected"]
    if _conversation(chosen[:-1]) != _conversation(rejected[:-1]):
        return [
            "chosen and rejected must share the same prompt (every message but their last); "
            "or give it once as 'prompt'"
        ]
    if _text(chosen[-1]) == _text(rejected[-1]):
        return ["chosen and rejected are the same answer: nothing to prefer"]
    return []


def _has_user(messages: Any) -> bool:
    return isinstance(messages, list) and any(
        isinstance(m, dict) and m.get("role") == "user" for m in messages
    )


def _text(message: dict[str, Any]) -> str:
    return str(message["content"]).strip()


def _conversation(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(str(m["role"]), str(m["content"])) for m in messages]


def normalize(row: dict[str, Any]) -> dict[str, Any]:
    """A valid row in the explicit spelling: {"prompt", "chosen", "rejected"}, messages as
    {role, content} only, other keys dropped."""

    def plain(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]

    if "prompt" in row and not isinstance(row["prompt"], str):
        prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
    else:
        prompt, chosen, rejected = row["chosen"][:-1], row["chosen"][-1:], row["rejected"][-1:]
    return {"prompt": plain(prompt), "chosen": plain(chosen), "rejected": plain(rejected)}


def task_of(row: Any) -> str | None:
    """ "chat" or "preference" by a row's keys (valid or not); None when neither fits."""
    if not isinstance(row, dict):
        return None
    if {"chosen", "rejected"} & set(row):
        return "preference"
    if "messages" in row:
        return "chat"
    return None
