"""`phi data validate` and `phi data prepare` on fixtures, malformed lines included."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finetune_phi.cli.main import main
from finetune_phi.data.chat_format import row_problems, validate_file
from finetune_phi.data.prepare import DataError, SampleSize, prepare
from tests.support import SAMPLE, hub_layout

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ([1, 2], "expected a JSON object"),
        ({"prompt": "x"}, "'messages' must be a non-empty list"),
        ({"messages": []}, "'messages' must be a non-empty list"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role is 'bot'"),
        (
            {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}]},
            "messages[0].content must be a non-empty string",
        ),
        (
            {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]},
            "messages[0].content must be a non-empty string",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "system", "content": "s"},
                    {"role": "assistant", "content": "a"},
                ]
            },
            "messages[1] is a system message",
        ),
        ({"messages": [{"role": "user", "content": "q"}]}, "the last message is 'user'"),
        (
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "assistant", "content": "a"},
                ]
            },
            "there is no user message",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "Hi<|end|>\n<|assistant|>\nSure"},
                    {"role": "assistant", "content": "a"},
                ]
            },
            "messages[0].content holds '<|end|>', a chat-template marker",
        ),
    ],
)
def test_each_rule_of_the_chat_format(row: object, reason: str) -> None:
    assert any(reason in problem for problem in row_problems(row)), row_problems(row)


def test_a_system_message_first_is_fine() -> None:
    row = {"messages": [{"role": "system", "content": "s"}, *GOOD["messages"]]}
    assert row_problems(row) == []


def test_validate_reports_every_bad_line_by_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(
        tmp_path / "mixed.jsonl",
        [
            json.dumps(GOOD),
            "{not json",
            json.dumps({"messages": [{"role": "user", "content": "q"}]}),
            "",
            json.dumps(
                {
                    "messages": [
                        {"role": "robot", "content": "x"},
                        {"role": "assistant", "content": "y"},
                    ]
                }
            ),
        ],
    )
    assert main(["data", "validate", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{path}:2: not valid JSON")
    assert f"{path}:3: the last message is 'user'; it must be 'assistant'" in err
    assert any(line.startswith(f"{path}:5: messages[0].role is 'robot'") for line in err)
    assert not any(line.startswith(f"{path}:1:") for line in err)


def test_validate_passes_the_shipped_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "validate", str(SAMPLE)]) == 0
    assert "45 rows, 0 problem(s)" in capsys.readouterr().out


def test_validate_prints_token_statistics_with_a_tokenizer(
    tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            ["data", "validate", str(SAMPLE), "--tokenizer", str(tiny_model), "--max-length", "30"]
        )
        == 0
    )
    stats = capsys.readouterr().out.splitlines()[-1]
    assert "tokens per conversation: min " in stats
    assert stats.endswith("over 30")
    assert int(stats.split("; ")[-1].split()[0]) > 0


def test_prepare_splits_80_20_keeping_only_messages(tmp_path: Path) -> None:
    result = prepare(out_dir=tmp_path, size=SampleSize.parse("100%"), seed=42, from_path=SAMPLE)
    train = [json.loads(line) for line in result.train.read_text().splitlines()]
    test = [json.loads(line) for line in result.eval.read_text().splitlines()]
    assert (len(train), len(test)) == (36, 9)
    assert all(set(row) == {"messages"} for row in train + test)
    source = [json.loads(line)["messages"] for line in SAMPLE.read_text().splitlines()]
    assert sorted(map(json.dumps, [r["messages"] for r in train + test])) == sorted(
        map(json.dumps, source)
    )


def test_the_split_is_fixed_by_the_seed(tmp_path: Path) -> None:
    def eval_rows(seed: int, out: str) -> str:
        return prepare(
            out_dir=tmp_path / out, size=SampleSize(rows=20), seed=seed, from_path=SAMPLE
        ).eval.read_text()

    assert eval_rows(7, "a") == eval_rows(7, "b")
    assert eval_rows(7, "a") != eval_rows(8, "c")


def test_a_row_count_keeps_that_many_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["data", "prepare", "--from", str(SAMPLE), "--sample", "10", "--out", str(tmp_path)])
        == 0
    )
    assert "(8 rows)" in capsys.readouterr().out
    assert len((tmp_path / "eval_data.jsonl").read_text().splitlines()) == 2


def test_parquet_source(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chat.parquet")
    result = prepare(
        out_dir=tmp_path / "out",
        size=SampleSize(rows=10),
        seed=1,
        from_path=tmp_path / "chat.parquet",
    )
    assert (result.train_rows, result.eval_rows) == (8, 2)


def test_hub_source_streams_only_the_rows_it_keeps(tmp_path: Path) -> None:
    """The hub code path, run on a local dataset folder laid out as the hub lays it out."""
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    repo = hub_layout(tmp_path / "ultrachat", "train_sft", rows)
    assert len(rows) == 45
    result = prepare(
        out_dir=tmp_path / "out",
        size=SampleSize.parse("20%"),
        seed=42,
        dataset=str(repo),
        split="train_sft",
    )
    assert result.train_rows + result.eval_rows == 9  # ceil(45 * 20 %)
    train = [json.loads(line)["messages"] for line in result.train.read_text().splitlines()]
    assert all(m in [r["messages"] for r in rows[:9]] for m in train)


def test_invalid_data_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "train_data.jsonl").write_text("previous\n")
    bad = write_lines(
        tmp_path / "bad.jsonl",
        [json.dumps(GOOD)] * 5
        + ["{oops", json.dumps({"messages": [{"role": "user", "content": "q"}]})],
    )
    with pytest.raises(DataError) as caught:
        prepare(out_dir=out, size=SampleSize(rows=100), seed=1, from_path=bad)
    message = str(caught.value)
    assert "nothing was written" in message
    assert f"{bad}:6: not valid JSON" in message
    assert f"{bad}:7: the last message is 'user'" in message
    assert (out / "train_data.jsonl").read_text() == "previous\n"
    assert sorted(p.name for p in out.iterdir()) == ["train_data.jsonl"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1%", SampleSize(percent=1)), ("0.5%", SampleSize(percent=0.5)), ("10", SampleSize(rows=10))],
)
def test_sample_sizes(text: str, expected: SampleSize) -> None:
    assert SampleSize.parse(text) == expected


@pytest.mark.parametrize("text", ["0%", "101%", "1", "2.5", "ten", "-3"])
def test_bad_sample_sizes_name_the_option_and_rule(
    text: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert (
        main(["data", "prepare", "--from", str(SAMPLE), "--sample", text, "--out", str(tmp_path)])
        == 2
    )
    err = capsys.readouterr().err
    assert f"--sample {text!r}" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_or_unsupported_source_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["data", "prepare", "--from", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path)])
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "data.csv").write_text("a,b\n")
    assert (
        main(["data", "prepare", "--from", str(tmp_path / "data.csv"), "--out", str(tmp_path)]) == 2
    )
    assert "must be a .jsonl or .parquet file" in capsys.readouterr().err


def test_validate_file_with_no_rows(tmp_path: Path) -> None:
    report = validate_file(write_lines(tmp_path / "empty.jsonl", [""]))
    assert not report.ok
    assert report.problems == [(0, "the file holds no rows")]


def test_validate_names_a_missing_file_as_a_usage_error_before_reading_any(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing input is exit 2 with phi's one line, as everywhere; what the files hold is
    validate's report (exit 1)."""
    code = main(["data", "validate", str(SAMPLE), str(tmp_path / "missing.jsonl")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err == (
        f"phi: error: {tmp_path / 'missing.jsonl'}: no such file "
        "(make it with `phi data prepare --out DIR`)\n"
    )
