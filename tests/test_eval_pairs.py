"""`phi eval --pairs`: preference accuracy (summed and per token) and margin for base and
candidate, with intervals. The tiny fine-tune prefers the held-out reference answers to
scrambled ones more often than its base; bad pairs are named by FILE:LINE, endpoints and
gates on what is not measured are refused before anything loads, and the arithmetic (ties
count half) is checked on hand-made log-probabilities."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from finetune_phi.cli.main import main
from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.evaluation import preference, report
from finetune_phi.evaluation.preference import LogProbs, Pair, ScoredPair

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def evaluate(*args: str) -> int:
    return main(["eval", "--max-new-tokens", "24", *args])


def read_report(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "report.json").read_text()))


def write_jsonl(path: Path, rows: Sequence[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def scrambled(text: str, seed: int) -> str | None:
    """`text` with its words in another order (None when it has fewer than two distinct)."""
    words = text.split()
    if len(set(words)) < 2:
        return None
    draw, shuffled = random.Random(seed), list(words)  # noqa: S311 - test data, not a secret
    while shuffled == words:
        draw.shuffle(shuffled)
    return " ".join(shuffled)


def pairs_from(held_out: Path, out: Path, *, implicit: bool = False) -> Path:
    """Each held-out conversation as a pair: chosen = its reference answer, rejected = that
    answer's words scrambled. (Another row's answer is no test of the fine-tune: the tiny
    model barely reads the prompt, so between two fluent answers it prefers at chance;
    measured on the rehearsal's nine rows, 4 of 9 for the fine-tune against 5 of 9 for
    its random base.)"""
    rows = []
    for index, line in enumerate(held_out.read_text().splitlines()):
        messages = json.loads(line)["messages"]
        rejected = scrambled(messages[-1]["content"], index)
        if rejected is None:
            continue
        answer = {"role": "assistant", "content": rejected}
        if implicit:
            rows.append({"chosen": messages, "rejected": [*messages[:-1], answer]})
        else:
            rows.append({"prompt": messages[:-1], "chosen": messages[-1:], "rejected": [answer]})
    assert len(rows) >= 5
    return write_jsonl(out, rows)


def assert_within(cell: dict[str, Any]) -> None:
    low, high = cell["ci95"]
    assert low <= cell["value"] <= high


# --- with the tiny models (slow) ---


def test_the_fine_tune_prefers_the_reference_answers_more_often_than_its_base(
    tiny_model: Path, fine_tuned: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held_out = fine_tuned / "data" / "eval_data.jsonl"
    pairs = pairs_from(held_out, tmp_path / "pairs.jsonl")
    out = tmp_path / "eval"
    code = evaluate(
        *("--base", str(tiny_model), "--candidate", str(fine_tuned / "model")),
        *("--data", str(held_out), "--pairs", str(pairs), "--out", str(out)),
        *("--gate", "preference_accuracy_per_token"),
    )
    assert code == 0, capsys.readouterr().err
    result = read_report(out)
    section = result["preference"]
    count = len(pairs.read_text().splitlines())
    assert section["n"] == count
    base, candidate = section["base"], section["candidate"]
    # The SFT model learnt these answers' wording: it prefers them more often, by more.
    assert (
        candidate["preference_accuracy_per_token"]["value"]
        > base["preference_accuracy_per_token"]["value"]
    )
    assert candidate["preference_accuracy"]["value"] >= base["preference_accuracy"]["value"]
    assert candidate["margin"]["value"] > base["margin"]["value"] > 0
    for role in ("base", "candidate", "delta"):
        for metric in preference.METRICS:
            assert_within(section[role][metric])
    assert section["delta"]["margin"]["ci95"][0] > 0
    # The held-out comparison ran beside it, as without --pairs.
    assert result["candidate"]["loss"] < result["base"]["loss"]
    assert (out / "rows.jsonl").is_file()
    measured = [json.loads(line) for line in (out / "pairs_rows.jsonl").read_text().splitlines()]
    assert len(measured) == count
    wins = sum(
        row["log_probs"]["candidate"]["chosen"]["log_prob"]
        > row["log_probs"]["candidate"]["rejected"]["log_prob"]
        for row in measured
    )
    assert wins / count == candidate["preference_accuracy"]["value"]
    assert all(row["log_probs"]["base"]["chosen"]["tokens"] > 0 for row in measured)
    shown = capsys.readouterr().out
    assert "| preference_accuracy_per_token |" in shown
    assert "| f1 |" in shown
    assert "pairs_rows.jsonl" in shown
    assert "| margin |" in (out / "report.md").read_text()


def test_the_preference_gate_fails_when_base_and_candidate_are_swapped(
    tiny_model: Path,
    fine_tuned: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Pairs alone (no data/eval_data.jsonl here), in TRL's implicit-prompt spelling."""
    monkeypatch.chdir(tmp_path)
    pairs = pairs_from(fine_tuned / "data" / "eval_data.jsonl", tmp_path / "p.jsonl", implicit=True)
    code = evaluate(
        *("--base", str(fine_tuned / "model"), "--candidate", str(tiny_model)),
        *("--pairs", str(pairs), "--gate", "margin"),
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "phi: note: no held-out data at data/eval_data.jsonl: comparing the pairs only" in err
    assert "--gate margin: the candidate is worse than the base (margin " in err
    result = read_report(tmp_path / "eval")
    assert result["held_out"].startswith("skipped")
    assert "base" not in result
    assert result["preference"]["delta"]["margin"]["value"] < 0
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == [
        "pairs_rows.jsonl",
        "report.json",
        "report.md",
    ]


# --- refusals, before anything loads (fast) ---


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder: no data/eval_data.jsonl."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def good_pair(answer: str = "Paris.", worse: str = "Lyon.") -> dict[str, Any]:
    return {
        "prompt": PROMPT,
        "chosen": [{"role": "assistant", "content": answer}],
        "rejected": [{"role": "assistant", "content": worse}],
    }


def test_bad_pairs_are_named_by_file_and_line(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workdir / "pairs.jsonl"
    path.write_text(
        json.dumps(good_pair())
        + "\n"
        + json.dumps(good_pair("Paris.", "Paris. "))
        + "\n\n"
        + json.dumps({"messages": [*PROMPT, {"role": "assistant", "content": "Paris."}]})
        + "\n"
        + '{"prompt": \n'
        + json.dumps({**good_pair(), "prompt": [{"role": "assistant", "content": "Hi"}]})
        + "\n"
    )
    assert (
        evaluate("--base", "no-such/base", "--candidate", "no-such/cand", "--pairs", str(path)) == 2
    )
    err = capsys.readouterr().err
    assert f"phi: error: --pairs {path} is not preference JSONL (" in err
    assert f"  {path}:2: chosen and rejected are the same answer: nothing to prefer" in err
    assert f"  {path}:4: a chat row" in err
    assert f"  {path}:5: not valid JSON" in err
    assert f"  {path}:6: there is no user message in 'prompt'" in err
    assert f"{path}:1:" not in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.jsonl", None, "no such file"),
        ("folder", "", "a folder; give the JSONL file inside it"),
        ("pairs.csv", "prompt,chosen,rejected\n", "CSV, which cannot hold a conversation's list of messages; preference data must be a .jsonl file"),
        ("pairs.jsonl", "[]\n", "a JSON array; preference JSONL has one JSON object per line"),
        ("pairs.jsonl", "\n", "is not preference JSONL (1 problem(s)):\n  {path}: the file holds no rows"),
    ],
)  # fmt: skip
def test_a_pairs_file_that_is_not_one_is_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | None, reason: str
) -> None:
    path = workdir / name
    if name == "folder":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    assert evaluate("--base", "a/b", "--candidate", "c/d", "--pairs", str(path)) == 2
    assert reason.format(path=path) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "spec"),
    [("--candidate", "http://127.0.0.1:9/score"), ("--base", "stack")],
)
def test_an_endpoint_with_pairs_is_refused_in_one_line_before_anything_is_read(
    workdir: Path, capsys: pytest.CaptureFixture[str], flag: str, spec: str
) -> None:
    models = {"--base": "some/base", "--candidate": "some/candidate", flag: spec}
    args = [item for pair in models.items() for item in pair]
    assert evaluate(*args, "--pairs", "missing.jsonl") == 2
    err = capsys.readouterr().err
    assert err == (
        "phi: error: --pairs needs the models' weights (it compares log-probabilities, which an "
        f"endpoint does not give): {flag} {spec} is an endpoint; give a local model folder or a "
        "hub id\n"
    )


def test_gates_on_what_is_not_measured_are_refused_before_anything_loads(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = write_jsonl(workdir / "pairs.jsonl", [good_pair()])
    models = ("--base", "a/b", "--candidate", "c/d")
    assert evaluate(*models, "--gate", "preference_accuracy", "--data", "x.jsonl") == 2
    assert "--gate preference_accuracy goes with --pairs FILE" in capsys.readouterr().err
    assert evaluate(*models, "--pairs", str(pairs), "--gate", "f1") == 2
    err = capsys.readouterr().err
    assert "--gate f1 needs the held-out data: there is no data/eval_data.jsonl" in err
    with pytest.raises(SystemExit):
        evaluate(*models, "--pairs", str(pairs), "--gate", "accuracy")
    choices = capsys.readouterr().err
    for name in ("loss", "f1", "rouge_l", *preference.METRICS):
        assert f"'{name}'" in choices


def test_held_out_data_is_still_required_unless_pairs_run_alone(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = write_jsonl(workdir / "pairs.jsonl", [good_pair()])
    models = ("--base", "a/b", "--candidate", "c/d", "--dry-run")
    assert evaluate(*models) == 2  # without --pairs, as before: the default must exist
    assert "--data data/eval_data.jsonl: no such file" in capsys.readouterr().err
    assert evaluate(*models, "--pairs", str(pairs), "--data", "given.jsonl") == 2
    assert "--data given.jsonl: no such file" in capsys.readouterr().err  # named: never skipped
    assert evaluate(*models, "--pairs", str(pairs)) == 0
    out, err = capsys.readouterr()
    assert out == (
        "dry run: base a/b and candidate c/d would measure the log-probabilities of the chosen "
        f"and rejected answers of 1 preference pair(s) from {pairs}\nnothing was loaded or sent\n"
    )
    assert "comparing the pairs only" in err
    held_out = workdir / "data" / "eval_data.jsonl"
    held_out.parent.mkdir()
    write_jsonl(held_out, [{"messages": [*PROMPT, {"role": "assistant", "content": "Paris."}]}])
    assert evaluate(*models, "--pairs", str(pairs)) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[:2] == [
        "dry run: base a/b and candidate c/d would answer 1 held-out row(s)",
        "and measure the log-probabilities of the chosen and rejected answers of 1 preference "
        f"pair(s) from {pairs}",
    ]
    assert err == ""


# --- the arithmetic (fast) ---


def scored(*measures: tuple[LogProbs, LogProbs]) -> list[ScoredPair]:
    pair = Pair(1, PROMPT, "Paris.", "Lyon.")
    return [ScoredPair(pair, {"base": base, "candidate": cand}) for base, cand in measures]


def test_accuracy_margin_and_ties_on_hand_made_log_probs() -> None:
    # (chosen, tokens, rejected, tokens): summed and per-token verdicts can differ.
    short_wins = LogProbs(-4.0, 2, -6.0, 6)  # summed: chosen; per token: -2 < -1, rejected
    long_wins = LogProbs(-9.0, 9, -3.0, 1)  # summed: rejected; per token: -1 > -3, chosen
    tie = LogProbs(-5.0, 5, -5.0, 5)  # both: a tie, half
    clear = LogProbs(-1.0, 1, -8.0, 2)  # both: chosen
    section = preference.summarize(
        scored((short_wins, clear), (long_wins, clear), (tie, clear), (clear, tie)),
        Path("pairs.jsonl"),
    )
    base, candidate, delta = section["base"], section["candidate"], section["delta"]
    assert base["preference_accuracy"]["value"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert base["preference_accuracy_per_token"]["value"] == pytest.approx((0 + 1 + 0.5 + 1) / 4)
    assert base["margin"]["value"] == pytest.approx((2 - 6 + 0 + 7) / 4)
    assert candidate["preference_accuracy"]["value"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert candidate["margin"]["value"] == pytest.approx((7 + 7 + 7 + 0) / 4)
    assert delta["preference_accuracy"]["value"] == pytest.approx(0.875 - 0.625)
    assert delta["margin"]["value"] == pytest.approx(21 / 4 - 3 / 4)
    assert section["ties_seen"] == {"base": 1, "candidate": 1}
    assert section["ties"] == "a tie counts as half a preference"
    for role in ("base", "candidate", "delta"):
        for metric in preference.METRICS:
            assert_within(section[role][metric])
    # Every tie: a model that cannot tell the answers apart scores a coin's 0.5.
    even = preference.summarize(scored((tie, tie), (tie, tie)), Path("p.jsonl"))
    assert even["base"]["preference_accuracy"] == {"value": 0.5, "ci95": [0.5, 0.5]}
    assert even["candidate"]["margin"]["value"] == 0
    with pytest.raises(UsageError, match="holds no pairs"):
        preference.summarize([], Path("p.jsonl"))


class Fixed:
    """A model whose loss is given: (summed cross-entropy, tokens) per answer."""

    def __init__(self, name: str, losses: dict[str, tuple[float, int] | None]) -> None:
        self.name = name
        self.losses = losses

    def answer(self, prompt: list[dict[str, str]], decoding: Any) -> str:
        raise AssertionError("pairs are measured, never answered")

    def loss(self, prompt: list[dict[str, str]], reference: str) -> tuple[float, int] | None:
        return self.losses[reference]


def test_a_pairs_log_probability_is_the_negated_loss_of_each_answer() -> None:
    pair = Pair(3, PROMPT, "Paris.", "Lyon.")
    model = Fixed("m", {"Paris.": (2.0, 4), "Lyon.": (6.0, 3)})
    measured = preference.score_pairs([pair], {"base": model, "candidate": model}, Path("p"))
    assert measured[0].log_probs["base"] == LogProbs(-2.0, 4, -6.0, 3)
    row = preference.rows(measured)[0]
    assert row["line"] == 3
    assert row["log_probs"]["candidate"]["margin"] == 4.0
    empty = Fixed("m", {"Paris.": (0.0, 0), "Lyon.": (6.0, 3)})
    with pytest.raises(UsageError, match=r"^p:3: the chosen answer has no tokens under m's"):
        preference.score_pairs([pair], {"base": empty}, Path("p"))
    endpoint = Fixed("http://x", {"Paris.": None, "Lyon.": None})
    with pytest.raises(UsageError, match="an endpoint gives no log-probabilities"):
        preference.score_pairs([pair], {"base": endpoint}, Path("p"))


def test_the_gate_reads_the_preference_section() -> None:
    section = preference.summarize(
        scored((LogProbs(-1.0, 1, -2.0, 1), LogProbs(-2.0, 1, -1.0, 1))), Path("p.jsonl")
    )
    summary = {"held_out": "skipped", "preference": section}
    with pytest.raises(PhiError) as failed:
        report.gate(summary, "preference_accuracy")
    assert str(failed.value) == (
        "--gate preference_accuracy: the candidate is worse than the base (preference_accuracy "
        "0.0000 against 1.0000)"
    )
    report.gate({"preference": {**section, "candidate": section["base"]}}, "margin")  # equal
    with pytest.raises(UsageError, match="goes with --pairs"):
        report.gate({"base": {}, "candidate": {}}, "margin")
    with pytest.raises(UsageError, match="held-out comparison skipped"):
        report.gate(summary, "f1")
