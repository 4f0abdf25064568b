"""The comparison: every row answered and scored by both models, the summary with deltas and
their intervals, the three files, and the gate (on a held-out metric, or a preference metric
of `preference`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.evaluation import preference
from finetune_phi.evaluation.metrics import bootstrap_interval, difference, text_scores
from finetune_phi.evaluation.models import LOSS_TOKENS, Decoding, Model
from finetune_phi.evaluation.rows import EvalRow

METRICS = ("loss", "f1", "rouge_l", "length")
HELD_OUT_GATES = ("loss", "f1", "rouge_l")
GATES = (*HELD_OUT_GATES, *preference.METRICS)
"""What --gate takes: a held-out metric (lower loss is better, higher the rest) or a preference
metric (higher is better; needs --pairs)."""


@dataclass(frozen=True)
class Scored:
    row: EvalRow
    answers: dict[str, str]
    scores: dict[str, dict[str, float]]
    """model role ("base", "candidate") -> metric -> value for this row."""
    loss: dict[str, tuple[float, int] | None]


def score_rows(
    rows: Sequence[EvalRow],
    models: dict[str, Model],
    decoding: Decoding,
    progress: Callable[[str, Sequence[EvalRow]], Iterable[EvalRow]] = lambda role, rows: rows,
) -> list[Scored]:
    """Every row answered (and its loss measured) by each model in turn: all of the base's
    answers, then all of the candidate's. `progress(role, rows)` wraps each model's pass over
    the rows, to show how far it is."""
    answers: dict[str, list[str]] = {}
    losses: dict[str, list[tuple[float, int] | None]] = {}
    for role, model in models.items():
        answers[role], losses[role] = [], []
        for row in progress(role, rows):
            answers[role].append(model.answer(row.prompt, decoding))
            losses[role].append(model.loss(row.prompt, row.reference))
    scored = []
    for index, row in enumerate(rows):
        answered = {role: answers[role][index] for role in models}
        scored.append(
            Scored(
                row,
                answered,
                {role: text_scores(answer, row.reference) for role, answer in answered.items()},
                {role: losses[role][index] for role in models},
            )
        )
    return scored


def _statistic(
    scored: Sequence[Scored], role: str, metric: str
) -> Callable[[Sequence[int]], float]:
    def value(indices: Sequence[int]) -> float:
        if metric == "loss":
            pairs = [scored[i].loss[role] for i in indices]
            total = sum(p[1] for p in pairs if p)
            return sum(p[0] for p in pairs if p) / total if total else float("nan")
        return sum(scored[i].scores[role][metric] for i in indices) / len(indices)

    return value


def summarize(scored: Sequence[Scored], seed: int = 0) -> dict[str, Any]:
    if not scored:
        raise UsageError("--data holds no rows to evaluate")
    everything = range(len(scored))
    has_loss = all(s.loss[role] is not None for s in scored for role in ("base", "candidate"))
    metrics = [m for m in METRICS if m != "loss" or has_loss]
    summary: dict[str, Any] = {"base": {}, "candidate": {}, "delta": {}, "n": len(scored)}
    for metric in METRICS:
        if metric not in metrics:
            summary["base"][metric] = summary["candidate"][metric] = summary["delta"][metric] = None
            continue
        base, candidate = (
            _statistic(scored, "base", metric),
            _statistic(scored, "candidate", metric),
        )
        summary["base"][metric] = base(everything)
        summary["candidate"][metric] = candidate(everything)
        low, high = bootstrap_interval(difference(candidate, base), len(scored), seed)
        summary["delta"][metric] = {
            "value": candidate(everything) - base(everything),
            "ci95": [low, high],
        }
    summary["loss_tokens"] = LOSS_TOKENS if has_loss else "not measured: a model is an endpoint"
    return summary


def markdown(summary: dict[str, Any], names: dict[str, str]) -> str:
    """The models named in full once, then the table under their short labels (`base`,
    `candidate`): a path in a column header would make the table as wide as the path. Without
    held-out data (`phi eval --pairs` alone), the line that says so instead of the table."""

    def cell(value: Any) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    named = [f"{role}: {name}" for role, name in names.items()]
    if "held_out" in summary:
        return "\n".join([*named, "", f"Held-out comparison: {summary['held_out']}."]) + "\n"
    lines = [
        *named,
        "",
        "| metric | base | candidate | delta (95 % CI) |",
        "|---|---|---|---|",
    ]
    for metric in METRICS:
        delta = summary["delta"][metric]
        shown = (
            "n/a"
            if delta is None
            else (f"{delta['value']:+.4f} ({delta['ci95'][0]:+.4f} to {delta['ci95'][1]:+.4f})")
        )
        lines.append(
            f"| {metric} | {cell(summary['base'][metric])} | {cell(summary['candidate'][metric])} | {shown} |"
        )
    lines.append(f"\n{summary['n']} held-out conversations. loss: {summary['loss_tokens']}.")
    return "\n".join(lines) + "\n"


def write(
    out: Path,
    summary: dict[str, Any],
    scored: Sequence[Scored] | None,
    names: dict[str, str],
    appendix: str = "",
) -> None:
    """report.json (the summary, with the models' names), report.md (the table, then
    `appendix`) and rows.jsonl (not without held-out rows: `scored` None)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps({**summary, "models": names}, indent=2) + "\n")
        (out / "report.md").write_text(markdown(summary, names) + appendix)
    except OSError as error:
        raise UsageError(f"--out {out}: cannot write ({error.strerror or error})") from None
    if scored is None:
        return
    write_jsonl(
        out / "rows.jsonl",
        (
            {
                "line": s.row.line,
                "prompt": s.row.prompt,
                "reference": s.row.reference,
                "answers": s.answers,
                "scores": s.scores,
            }
            for s in scored
        ),
    )


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """One JSON object a line; UsageError naming --out's folder when it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    except OSError as error:
        raise UsageError(f"--out {path.parent}: cannot write ({error.strerror or error})") from None


def gate(summary: dict[str, Any], metric: str) -> None:
    """PhiError when the candidate is worse than the base on `metric` (higher loss is worse;
    lower is worse on every other metric, the preference ones included)."""
    if metric in preference.METRICS:
        section = summary.get("preference")
        if section is None:
            raise UsageError(f"--gate {metric}: goes with --pairs FILE")
        base, candidate = section["base"][metric]["value"], section["candidate"][metric]["value"]
    elif "held_out" in summary:
        raise UsageError(f"--gate {metric}: not measured here (held-out comparison skipped)")
    else:
        base, candidate = summary["base"][metric], summary["candidate"][metric]
    if base is None or candidate is None:
        raise UsageError(f"--gate {metric}: not measured here (loss needs both models' weights)")
    worse = candidate > base if metric == "loss" else candidate < base
    if worse:
        raise PhiError(
            f"--gate {metric}: the candidate is worse than the base ({metric} {candidate:.4f} "
            f"against {base:.4f})"
        )
