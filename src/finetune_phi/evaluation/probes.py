"""Safety probes: prompts that invite a harmful answer, for `phi eval --safety`.

The shipped set (`probes.jsonl`, 32 prompts, 8 for each of Content Safety's four harm
categories) was written for this project in December 2026 and is MIT-licensed like the
rest of the repository; docs/reference/safety-probes.md says how it was made and what it
cannot show. A user's own set (`--safety-prompts FILE`) is JSON Lines, one probe a line:
`{"prompt": "..."}` or `{"messages": [...]}` ending in a user turn, with an optional `id`
and `category`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from finetune_phi.core.errors import UsageError
from finetune_phi.data.chat_format import file_problem, read_jsonl
from finetune_phi.evaluation.safety import Probe

SHIPPED = "probes.jsonl"
CATEGORIES = ("Hate", "SelfHarm", "Sexual", "Violence")
ROLES = ("system", "user", "assistant")
MAX_PROBES = 10_000
MAX_PROMPT = 10_000
"""Characters of a probe's messages together."""


def shipped() -> Path:
    return Path(str(files("finetune_phi.evaluation").joinpath(SHIPPED)))


def problem(row: Any) -> str | None:
    """Why a parsed line is not a probe; None when it is."""
    if not isinstance(row, dict):
        return "a probe is a JSON object"
    unknown = set(row) - {"id", "category", "prompt", "messages"}
    if unknown:
        return f"unknown key {sorted(unknown)[0]!r} (a probe has id, category, prompt or messages)"
    if ("prompt" in row) == ("messages" in row):
        return "give either prompt (a string) or messages (a list ending in a user turn)"
    if "prompt" in row and not (isinstance(row["prompt"], str) and row["prompt"].strip()):
        return "prompt must be a non-empty string"
    messages = row.get("messages", [{"role": "user", "content": row.get("prompt", "")}])
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list"
    for index, message in enumerate(messages):
        if not (
            isinstance(message, dict)
            and set(message) == {"role", "content"}
            and message["role"] in ROLES
            and isinstance(message["content"], str)
            and message["content"].strip()
        ):
            return (
                f"messages[{index}] must be {{role, content}} with a role of "
                f"{', '.join(ROLES)} and non-empty text"
            )
    if messages[-1]["role"] != "user":
        return "the last message must be the user's: the model answers it"
    if sum(len(m["content"]) for m in messages) > MAX_PROMPT:
        return f"the messages hold over {MAX_PROMPT} characters"
    if "id" in row and not (isinstance(row["id"], str) and row["id"].strip()):
        return "id must be a non-empty string"
    if "category" in row and row["category"] not in CATEGORIES:
        return f"category {row['category']!r} is not one of {', '.join(CATEGORIES)}"
    return None


def read(path: Path | None, flag: str = "--safety-prompts") -> list[Probe]:
    """The probes of `path` (the shipped set when None); UsageError naming FILE:LINE and the
    rule for the first bad line, and the count of bad lines."""
    source = path or shipped()
    whole = file_problem(source)
    if whole is not None:
        raise UsageError(f"{flag} {source}: {whole}")
    probes: list[Probe] = []
    bad: list[str] = []
    seen: set[str] = set()
    for line, row, reason in read_jsonl(source):
        reason = reason or (problem(row) if row is not None else None)
        if reason is None and row is not None:
            probe_id = str(row.get("id") or f"line-{line}")
            if probe_id in seen:
                reason = f"id {probe_id!r} is given twice"
            else:
                seen.add(probe_id)
                messages = row.get("messages") or [{"role": "user", "content": row["prompt"]}]
                probes.append(
                    Probe(probe_id, row.get("category", ""), messages, f"{source.name}:{line}")
                )
        if reason is not None:
            bad.append(f"{source}:{line}: {reason}")
    if bad:
        more = f" ({len(bad)} bad lines)" if len(bad) > 1 else ""
        raise UsageError(f"{flag}: {bad[0]}{more}")
    if not probes:
        raise UsageError(f"{flag} {source}: holds no probes")
    if len(probes) > MAX_PROBES:
        raise UsageError(f"{flag} {source}: {len(probes)} probes; at most {MAX_PROBES}")
    return probes
