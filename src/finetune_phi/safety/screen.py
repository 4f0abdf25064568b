"""`phi data screen`: every user and assistant message of chat rows through Content Safety;
of preference rows, the prompt's user messages and both answers, chosen and rejected (in
either of TRL's spellings; a `messages` column beside them, as UltraFeedback's, is not read:
`preference_format.conversation`).

Long messages are split into pieces of at most `client.MAX_TEXT` code points (at whitespace
where there is some); a row takes, per category, the highest severity of its pieces, and is
flagged when one reaches the threshold. Results are cached per piece (a SHA-256 of the API
version, the categories and the text: never the text itself) in a JSON Lines file next to the
report, appended as each answer arrives, so an interrupted screen resumed sends only what is
left, and identical pieces are sent once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune_phi.core.errors import UsageError
from finetune_phi.data.chat_format import file_problem, read_jsonl, validate_rows
from finetune_phi.data.preference_format import conversation, row_problems, task_of
from finetune_phi.safety.client import API_VERSION, CATEGORIES, MAX_TEXT, SEVERITIES

SCREENED_ROLES = ("user", "assistant")
THRESHOLDS = {"low": 2, "medium": 4, "high": 6}
DEFAULT_THRESHOLD = "medium"

Row = tuple[int, Any]
"""(line number, parsed chat or preference row)."""


def threshold(text: str) -> int:
    """low/medium/high, or a severity 2, 4 or 6; UsageError otherwise."""
    value = text.strip().lower()
    if value in THRESHOLDS:
        return THRESHOLDS[value]
    if value in {str(s) for s in SEVERITIES[1:]}:
        return int(value)
    raise UsageError(
        f"--threshold {text!r}: must be low (2), medium (4) or high (6), or one of 2, 4, 6"
    )


def pieces(text: str, limit: int = MAX_TEXT) -> list[str]:
    """`text` cut into pieces of at most `limit` code points, at the last whitespace before
    the limit where there is one in its second half; nothing is lost or added."""
    out: list[str] = []
    while len(text) > limit:
        cut = max(text.rfind(" ", limit // 2, limit), text.rfind("\n", limit // 2, limit))
        cut = cut + 1 if cut > 0 else limit
        out.append(text[:cut])
        text = text[cut:]
    if text.strip():
        out.append(text)
    return out


def piece_key(text: str, categories: Sequence[str]) -> str:
    return hashlib.sha256(
        json.dumps([API_VERSION, list(categories), text], ensure_ascii=False).encode()
    ).hexdigest()


def row_pieces(row: Any) -> list[str]:
    """The pieces of a valid row's user and assistant messages (a preference row's prompt and
    both answers)."""
    return [
        piece
        for message in conversation(row)
        if message.get("role") in SCREENED_ROLES and isinstance(message.get("content"), str)
        for piece in pieces(message["content"])
    ]


def read_file(path: Path) -> list[Row]:
    """A chat or preference JSONL file's rows (the task told by its first row, as `phi data
    validate` tells it); a UsageError in one line when a row is not of that task."""
    problem = file_problem(path)
    if problem is not None:
        raise UsageError(f"{path}: {problem}")
    numbered = [item for item in read_jsonl(path) if item[1] is not None or item[2] is not None]
    first = next((row for _, row, _ in numbered if row is not None), None)
    pairs = task_of(first) == "preference"
    report = (
        validate_rows(iter(numbered), path, row_problems)
        if pairs
        else validate_rows(iter(numbered), path)
    )
    if not report.ok:
        line, reason = report.problems[0]
        raise UsageError(
            f"{path}: not {'preference' if pairs else 'chat'} JSONL ({len(report.problems)} "
            "problem(s), the first at line "
            f"{line}: {reason}); `phi data validate {path}` lists them; nothing was sent"
        )
    return [(line, row) for line, row, _ in numbered]


class Cache:
    """Results by piece key, in a JSON Lines file appended to as answers arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.results: dict[str, dict[str, int]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.results[str(entry["key"])] = {
                        str(k): int(v) for k, v in entry["severities"].items()
                    }
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # a line cut short by an interrupted run: that piece is sent again

    def add(self, key: str, severities: dict[str, int]) -> None:
        self.results[key] = severities
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"key": key, "severities": severities}) + "\n")
            out.flush()
            os.fsync(out.fileno())


def cache_path(report: Path) -> Path:
    """Where the cache of a report lives: beside it."""
    return report.with_name(f"{report.name}.cache.jsonl")


@dataclass
class Flagged:
    source: str
    line: int
    severities: dict[str, int]
    """The categories at or above the threshold, with their severity."""

    def lines(self) -> list[str]:
        return [f"{self.source}:{self.line}: {c} {s}" for c, s in self.severities.items()]


@dataclass
class Plan:
    """What a screen sends: the pieces not in the cache, once each."""

    sources: list[tuple[str, list[Row]]]
    categories: Sequence[str]
    keys: dict[str, str] = field(default_factory=dict)
    """Key -> piece text, for every piece of every row."""
    row_keys: dict[tuple[str, int], list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, sources: list[tuple[str, list[Row]]], categories: Sequence[str]) -> Plan:
        plan = cls(sources, categories)
        for source, rows in sources:
            for line, row in rows:
                keys = []
                for piece in row_pieces(row):
                    key = piece_key(piece, categories)
                    plan.keys.setdefault(key, piece)
                    keys.append(key)
                plan.row_keys[(source, line)] = keys
        return plan

    def to_send(self, cache: Cache) -> list[str]:
        return [key for key in self.keys if key not in cache.results]

    @property
    def rows(self) -> int:
        return sum(len(rows) for _, rows in self.sources)

    @property
    def messages(self) -> int:
        return sum(
            1
            for _, rows in self.sources
            for _, row in rows
            for m in conversation(row)
            if m.get("role") in SCREENED_ROLES
        )


@dataclass
class Outcome:
    flagged: list[Flagged]
    rows: int
    sent: int
    cached: int


def screen(
    plan: Plan,
    cache: Cache,
    analyze: Callable[[str], dict[str, int]],
    limit: int,
) -> Outcome:
    """Send what the cache lacks (each answer cached as it arrives), then judge every row."""
    send = plan.to_send(cache)
    cached = len(plan.keys) - len(send)
    for key in send:
        cache.add(key, analyze(plan.keys[key]))
    flagged = []
    for source, rows in plan.sources:
        for line, _ in rows:
            worst = dict.fromkeys(plan.categories, 0)
            for key in plan.row_keys[(source, line)]:
                for category, severity in cache.results[key].items():
                    if category in worst:
                        worst[category] = max(worst[category], severity)
            over = {c: s for c, s in worst.items() if s >= limit}
            if over:
                flagged.append(Flagged(source, line, over))
    return Outcome(flagged, plan.rows, len(send), cached)


def write_report(
    path: Path, outcome: Outcome, *, endpoint: str, limit: int, categories: Iterable[str]
) -> None:
    """The JSON report, written whole to a temporary sibling and then moved into place."""
    document = {
        "endpoint": endpoint,
        "apiVersion": API_VERSION,
        "threshold": limit,
        "categories": list(categories),
        "rows": outcome.rows,
        "piecesSent": outcome.sent,
        "piecesFromCache": outcome.cached,
        "flaggedRows": len(outcome.flagged),
        "flagged": [
            {"source": f.source, "line": f.line, "severities": f.severities}
            for f in outcome.flagged
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


__all__ = ["CATEGORIES", "DEFAULT_THRESHOLD", "Cache", "Plan", "screen", "threshold"]
