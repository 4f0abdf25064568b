"""`phi eval` on tiny models built offline: the fine-tune beats its base on held-out loss and
F1, the gate fails when the two are swapped, and an endpoint is evaluated through the
scoring contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune_phi.cli.main import main
from tests.contract_server import Recorded, contract_server


@pytest.fixture
def held_out(fine_tuned: Path) -> Path:
    """The rehearsal's test split: the conversations the fine-tune never saw."""
    return fine_tuned / "data" / "eval_data.jsonl"


def evaluate(*args: str) -> int:
    return main(["eval", "--max-new-tokens", "24", *args])


def report(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "report.json").read_text()))


def test_the_fine_tune_beats_its_base_and_passes_the_gate(
    tiny_model: Path,
    fine_tuned: Path,
    held_out: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "eval"
    code = evaluate(
        "--base",
        str(tiny_model),
        "--candidate",
        str(fine_tuned / "model"),
        "--data",
        str(held_out),
        "--out",
        str(out),
        "--gate",
        "loss",
    )
    assert code == 0, capsys.readouterr().err
    result = report(out)
    rows = held_out.read_text().splitlines()
    assert result["n"] == len(rows)
    assert result["candidate"]["loss"] < result["base"]["loss"]
    assert result["candidate"]["f1"] > result["base"]["f1"]
    low, high = result["delta"]["loss"]["ci95"]
    assert low <= result["delta"]["loss"]["value"] <= high
    assert "the prompt's tokens do not count" in result["loss_tokens"]
    scored = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(scored) == len(rows)
    assert set(scored[0]["answers"]) == {"base", "candidate"}
    assert scored[0]["reference"] == json.loads(rows[0])["messages"][-1]["content"]
    assert "| loss |" in (out / "report.md").read_text()
    assert "| f1 |" in capsys.readouterr().out


def test_the_gate_fails_when_base_and_candidate_are_swapped(
    tiny_model: Path,
    fine_tuned: Path,
    held_out: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = evaluate(
        "--base",
        str(fine_tuned / "model"),
        "--candidate",
        str(tiny_model),
        "--data",
        str(held_out),
        "--out",
        str(tmp_path),
        "--gate",
        "f1",
        "--limit",
        "4",
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "--gate f1: the candidate is worse than the base (f1 " in err
    assert "against" in err


def test_a_phi_serve_url_is_evaluated_through_the_scoring_contract(
    scoring_server: str,
    fine_tuned: Path,
    held_out: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    local, served = tmp_path / "local", tmp_path / "served"
    common = ["--base", str(fine_tuned / "model"), "--data", str(held_out), "--limit", "4"]
    assert evaluate(*common, "--candidate", str(fine_tuned / "model"), "--out", str(local)) == 0
    assert evaluate(*common, "--candidate", scoring_server, "--out", str(served)) == 0
    capsys.readouterr()
    result = report(served)
    assert result["candidate"]["loss"] is None
    assert result["loss_tokens"].startswith("not measured")
    # Greedy decoding: the same weights answer the same, in-process or through the server.
    assert result["candidate"]["f1"] == report(local)["candidate"]["f1"]
    gated = [*common, "--candidate", scoring_server, "--out", str(served), "--gate", "loss"]
    assert evaluate(*gated) == 2
    assert "not measured here" in capsys.readouterr().err


def test_an_endpoint_that_refuses_the_key_is_one_line(
    tiny_model: Path,
    held_out: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PHI_ENDPOINT_KEY", "wrong-key-1")
    with contract_server(Recorded(key="right-key-2")) as (url, _):
        code = evaluate(
            "--base",
            str(tiny_model),
            "--candidate",
            url,
            "--data",
            str(held_out),
            "--out",
            str(tmp_path),
            "--limit",
            "1",
        )
    assert code == 1
    err = capsys.readouterr().err
    assert "rejected the key (HTTP 401)" in err
    assert "wrong-key-1" not in err


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such file"),
        (
            "not-chat",
            "is not chat JSONL (1 problem(s)):\n  {data}:2: 'messages' must be a non-empty list",
        ),
        ("bad-model", "the model does not load"),
    ],
)
def test_bad_inputs_are_named(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    data = tmp_path / "held_out.jsonl"
    good = json.dumps(
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    )
    if setup == "not-chat":
        data.write_text(good + '\n{"messages": []}\n')
    elif setup == "bad-model":
        data.write_text(good + "\n")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    base = str(empty) if setup == "bad-model" else str(tiny_model)
    assert (
        evaluate(
            "--base",
            base,
            "--candidate",
            str(tiny_model),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o"),
        )
        == 2
    )
    assert message.format(data=data) in capsys.readouterr().err


def held_out_rows(path: Path, rows: int) -> Path:
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    path.write_text("".join(json.dumps({"messages": conversation}) + "\n" for _ in range(rows)))
    return path


def test_progress_goes_to_stderr_and_the_tables_use_short_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off a terminal (pytest's captured stderr), each model's answers are counted in lines;
    the models are named in full once, above a table headed `base` and `candidate`."""
    data = held_out_rows(tmp_path / "held_out.jsonl", 20)
    with contract_server() as (base, _), contract_server() as (candidate, _):
        code = evaluate(
            *("--base", base, "--candidate", candidate, "--data", str(data)),
            *("--out", str(tmp_path / "eval")),
        )
        assert code == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        *(f"base: {done}/20 answers" for done in range(2, 21, 2)),
        *(f"candidate: {done}/20 answers" for done in range(2, 21, 2)),
    ]
    table = (
        f"base: {base}\ncandidate: {candidate}\n\n| metric | base | candidate | delta (95 % CI) |\n"
    )
    assert out.startswith(table)
    assert (tmp_path / "eval" / "report.md").read_text().startswith(table)
    assert report(tmp_path / "eval")["models"] == {"base": base, "candidate": candidate}


def test_a_relative_model_folder_is_named_in_full_and_a_missing_one_in_one_line(
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = held_out_rows(tmp_path / "held_out.jsonl", 1)
    monkeypatch.chdir(tiny_model.parent)
    with contract_server() as (url, _):
        args = ["--candidate", url, "--data", str(data), "--out", str(tmp_path / "eval")]
        assert evaluate("--base", tiny_model.name, *args) == 0
        assert report(tmp_path / "eval")["models"]["base"] == str(tiny_model)
        capsys.readouterr()
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a probe would fail, not hang
        assert evaluate("--base", "./no-such-model", *args) == 2
    assert capsys.readouterr().err == "phi: error: --base ./no-such-model: no such folder\n"
