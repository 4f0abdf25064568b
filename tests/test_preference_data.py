"""Preference data for DPO: `phi data prepare --task preference` from a local file (JSON Lines
or Parquet, every row kept) or a hub dataset (UltraFeedback's layout, offline), normalized to
TRL's explicit conversational preference format; `phi data validate` names every bad pair by
FILE:LINE; `--tokenizer` measures prompt plus each answer; screening reads both answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finetune_phi.cli.main import main
from finetune_phi.data.preference_format import conversation
from finetune_phi.data.prepare import DataError, SampleSize, prepare
from finetune_phi.safety.screen import row_pieces
from tests.content_safety_server import S0_RATE, ContentSafetyStandIn, TokenServer
from tests.support import SAMPLE, hub_layout

USER = {"role": "user", "content": "Name a primary colour."}
GOOD = {
    "prompt": [USER],
    "chosen": [{"role": "assistant", "content": "Red."}],
    "rejected": [{"role": "assistant", "content": "Purple, probably."}],
}
IMPLICIT = {  # UltraFeedback's spelling: a string prompt, whole conversations
    "prompt": "Name a primary colour.",
    "chosen": [USER, {"role": "assistant", "content": "Blue."}],
    "rejected": [USER, {"role": "assistant", "content": "Green."}],
    "score_chosen": 9.0,
}
ULTRAFEEDBACK = {  # HuggingFaceH4/ultrafeedback_binarized's columns, `messages` among them
    "prompt": "Name a primary colour.",
    "prompt_id": "0f3a",
    "chosen": [USER, {"role": "assistant", "content": "Yellow."}],
    "rejected": [USER, {"role": "assistant", "content": "Pink, or maybe a brawl."}],
    "messages": [USER, {"role": "assistant", "content": "Yellow."}],
    "score_chosen": 8.5,
    "score_rejected": 3.0,
}


def pairs_file(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_prepare_keeps_every_pair_normalized_beside_the_chat_files(tmp_path: Path) -> None:
    source = pairs_file(tmp_path / "mine.jsonl", [GOOD, IMPLICIT] * 5)
    out = tmp_path / "data"
    out.mkdir()
    (out / "train_data.jsonl").write_text("chat rows stay\n")
    result = prepare(out_dir=out, seed=1, from_path=source, task="preference")
    assert (result.train.name, result.eval.name) == ("train_pairs.jsonl", "eval_pairs.jsonl")
    assert (result.train_rows, result.eval_rows) == (8, 2)
    written = [
        json.loads(line)
        for path in (result.train, result.eval)
        for line in path.read_text().splitlines()
    ]
    assert all(set(row) == {"prompt", "chosen", "rejected"} for row in written)
    assert {row["chosen"][0]["content"] for row in written} == {"Red.", "Blue."}
    assert all(row["prompt"] == [USER] for row in written)  # the string prompt resolved
    assert (out / "train_data.jsonl").read_text() == "chat rows stay\n"


def test_prepare_reads_parquet_and_the_hub_layout(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist([IMPLICIT] * 10), tmp_path / "pairs.parquet")
    result = prepare(
        out_dir=tmp_path / "a", seed=1, from_path=tmp_path / "pairs.parquet", task="preference"
    )
    assert result.train_rows + result.eval_rows == 10
    repo = hub_layout(tmp_path / "ultrafeedback", "train_prefs", [IMPLICIT] * 20)
    hub = prepare(
        out_dir=tmp_path / "b",
        size=SampleSize.parse("50%"),
        seed=1,
        dataset=str(repo),
        split="train_prefs",
        task="preference",
    )
    assert hub.train_rows + hub.eval_rows == 10


def test_a_bad_pair_is_refused_by_line_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "train_pairs.jsonl").write_text("previous\n")
    same = {**GOOD, "rejected": GOOD["chosen"]}
    source = pairs_file(tmp_path / "bad.jsonl", [GOOD] * 4 + [same, {"messages": [USER]}])
    with pytest.raises(DataError) as refused:
        prepare(out_dir=out, seed=1, from_path=source, task="preference")
    message = str(refused.value)
    assert "nothing was written" in message
    assert f"{source}:5: chosen and rejected are the same answer" in message
    assert f"{source}:6: a chat row" in message
    assert (out / "train_pairs.jsonl").read_text() == "previous\n"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({**GOOD, "prompt": [{"role": "assistant", "content": "hi"}]},
         "the last message of 'prompt' is 'assistant'; it must be 'user'"),
        ({**GOOD, "chosen": [{"role": "assistant", "content": "  "}]},
         "chosen[0].content must be a non-empty string"),
        ({**GOOD, "rejected": GOOD["chosen"] * 2}, "'rejected' must hold one assistant message"),
        ({"prompt": [USER], "chosen": GOOD["chosen"]}, "'rejected' is missing"),
        ({**IMPLICIT, "rejected": [{"role": "user", "content": "Other?"},
                                   {"role": "assistant", "content": "Green."}]},
         "chosen and rejected must share the same prompt"),
        ({**GOOD, "chosen": [{"role": "assistant", "content": "a <|end|> b"}]},
         "chosen[0].content holds '<|end|>', a chat-template marker"),
        ({**GOOD, "rejected": [{"role": "assistant", "content": " Red. "}]},
         "chosen and rejected are the same answer: nothing to prefer"),
        ({**IMPLICIT, "rejected": IMPLICIT["chosen"]},
         "chosen and rejected are the same answer: nothing to prefer"),
        ({**GOOD, "prompt": [{"role": "bot", "content": "Hi"}, USER]},
         "prompt[0].role is 'bot'; must be one of system, user, assistant"),
        ({**GOOD, "chosen": [{"role": "user", "content": "Red."}]},
         "the last message of 'chosen' is 'user'; it must be 'assistant'"),
        ({**GOOD, "prompt": [USER, {"role": "system", "content": "Be brief."}, USER]},
         "prompt[1] is a system message; only the first message may be one"),
        ({**GOOD, "prompt": "Name a primary colour."},
         "'prompt' is a string but an answer holds no user message"),
        ({"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
         "chosen and rejected are plain text (TRL's standard format)"),
    ],
)  # fmt: skip
def test_validate_names_each_rule_by_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], row: Any, reason: str
) -> None:
    path = pairs_file(tmp_path / "pairs.jsonl", [GOOD, row])
    assert main(["data", "validate", str(path)]) == 1
    captured = capsys.readouterr()
    assert f"{path}:2: {reason}" in captured.err
    assert f"{path}: 2 pairs, " in captured.out


def test_validate_tells_the_task_from_the_first_row_and_reports_a_mixed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = pairs_file(tmp_path / "good.jsonl", [GOOD, IMPLICIT])
    assert main(["data", "validate", str(good)]) == 0
    assert f"{good}: 2 pairs, 0 problem(s)" in capsys.readouterr().out
    chat = {"messages": [USER, {"role": "assistant", "content": "Red."}]}
    mixed = pairs_file(tmp_path / "mixed.jsonl", [GOOD, chat])
    assert main(["data", "validate", str(mixed)]) == 1
    assert f"{mixed}:2: a chat row" in capsys.readouterr().err
    assert main(["data", "validate", "--task", "chat", str(good)]) == 1
    assert f"{good}:1: a preference row (chosen, rejected), not a chat row" in (
        capsys.readouterr().err
    )


def test_prepare_preference_needs_pairs_and_names_the_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [USER, GOOD["chosen"][0]]}) + "\n")
    argv = ["data", "prepare", "--task", "preference", "--from", str(chat), "--out", "x"]
    assert main([*argv]) == 2
    assert f"{chat}:1: a chat row" in capsys.readouterr().err


def test_screening_reads_the_prompt_and_both_answers() -> None:
    system = {"role": "system", "content": "Be brief."}
    row = {**GOOD, "prompt": [system, USER]}
    assert row_pieces(row) == ["Name a primary colour.", "Red.", "Purple, probably."]


def test_prepare_screen_drops_a_pair_whose_rejected_answer_is_harmful(
    tmp_path: Path,
    service: ContentSafetyStandIn,
    signed_in: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    harmful = {**GOOD, "rejected": [{"role": "assistant", "content": "a brawl"}]}
    source = pairs_file(tmp_path / "pairs.jsonl", [GOOD] * 4 + [harmful])
    out = tmp_path / "data"
    argv = ["data", "prepare", "--task", "preference", "--from", str(source), "--out", str(out)]
    screen = ["--screen", "drop", "--endpoint", service.base_url, *S0_RATE]
    assert main([*argv, *screen]) == 0, capsys.readouterr().err
    assert f"{source}:5: Violence 4" in capsys.readouterr().err
    kept = [
        line for name in ("train_pairs.jsonl", "eval_pairs.jsonl")
        for line in (out / name).read_text().splitlines()
    ]  # fmt: skip
    assert len(kept) == 4
    assert "brawl" not in "".join(kept)


def test_the_hub_default_split_and_ultrafeedbacks_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """UltraFeedback's layout through the command line, its split taken by default: its extra
    columns (a `messages` that repeats chosen among them) are dropped, the rest normalized."""
    repo = hub_layout(tmp_path / "ultrafeedback", "train_prefs", [ULTRAFEEDBACK, IMPLICIT] * 5)
    out = tmp_path / "data"
    argv = ["data", "prepare", "--task", "preference", "--dataset", str(repo), "--out", str(out)]
    assert main([*argv, "--sample", "100%"]) == 0, capsys.readouterr().err
    assert "train_pairs.jsonl (8 rows)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["eval_pairs.jsonl", "train_pairs.jsonl"]
    written = [
        json.loads(line)
        for name in ("train_pairs.jsonl", "eval_pairs.jsonl")
        for line in (out / name).read_text().splitlines()
    ]
    assert all(set(row) == {"prompt", "chosen", "rejected"} for row in written)
    assert {row["rejected"][0]["content"] for row in written} == {
        "Pink, or maybe a brawl.",
        "Green.",
    }
    assert main([*argv, "--split", "test_prefs"]) == 2  # a split it does not have: one line
    assert "--split 'test_prefs': " in capsys.readouterr().err


def test_pairs_and_chat_data_share_a_folder_and_each_cleans_up_only_its_own(
    tmp_path: Path,
) -> None:
    out = tmp_path / "data"
    chat = prepare(out_dir=out, seed=1, from_path=SAMPLE)
    before = {path: path.read_bytes() for path in (chat.train, chat.eval)}
    stale_pairs = out / ".train_pairs.jsonl.k1ll3d00"  # what a killed run left
    stale_chat = out / ".train_data.jsonl.k1ll3d00"
    for stale in (stale_pairs, stale_chat):
        stale.write_text("half a file\n")
    source = pairs_file(tmp_path / "pairs.jsonl", [GOOD, IMPLICIT] * 3)
    prepare(out_dir=out, seed=1, from_path=source, task="preference")
    assert not stale_pairs.exists()
    assert stale_chat.exists()  # the chat files' leftovers are for a chat prepare to remove
    assert {path: path.read_bytes() for path in (chat.train, chat.eval)} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            ".train_data.jsonl.k1ll3d00",
            "train_data.jsonl",
            "eval_data.jsonl",
            "train_pairs.jsonl",
            "eval_pairs.jsonl",
        ]
    )


def test_screening_reads_each_answer_once_beside_a_messages_column() -> None:
    """UltraFeedback's rows also carry `messages` (the chosen conversation): screening reads
    the pair as DPO does, prompt and both answers, and the rejected answer is not missed."""
    assert row_pieces(ULTRAFEEDBACK) == [
        "Name a primary colour.",
        "Yellow.",
        "Pink, or maybe a brawl.",
    ]
    assert row_pieces(IMPLICIT) == ["Name a primary colour.", "Blue.", "Green."]
    assert [m["role"] for m in conversation(ULTRAFEEDBACK)] == ["user", "assistant", "assistant"]


def test_phi_data_screen_reads_pairs_by_file_and_line(
    tmp_path: Path,
    service: ContentSafetyStandIn,
    signed_in: TokenServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = pairs_file(tmp_path / "pairs.jsonl", [GOOD, ULTRAFEEDBACK])
    argv = ["data", "screen", str(data), "--endpoint", service.base_url, *S0_RATE]
    assert main([*argv, "--dry-run"]) == 0
    assert "6 user and assistant message(s) in 2 row(s)" in capsys.readouterr().out
    assert main(argv) == 1
    assert capsys.readouterr().err.splitlines() == [f"{data}:2: Violence 4"]
    assert sorted(service.analyzed) == sorted(
        [
            "Name a primary colour.",
            "Red.",
            "Purple, probably.",
            "Yellow.",
            "Pink, or maybe a brawl.",
        ]
    )
    mixed = pairs_file(tmp_path / "mixed.jsonl", [GOOD, {"messages": [USER, GOOD["chosen"][0]]}])
    assert main(["data", "screen", str(mixed), "--endpoint", service.base_url, *S0_RATE]) == 2
    assert "not preference JSONL" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's tokenizer (trained on the shipped sample, Phi-3's chat template)
    without the model: seconds, not the session's `tiny_model`."""
    from finetune_phi.data.prepare import iter_messages
    from finetune_phi.local.tiny_model import build_tokenizer

    texts = [m["content"] for messages in iter_messages(SAMPLE) for m in messages]
    return build_tokenizer(texts, tmp_path_factory.mktemp("tokenizer"))


def test_validate_measures_prompt_plus_each_answer_in_tokens(
    tokenizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(tokenizer)

    def tokens(messages: Any) -> int:
        return len(loaded.apply_chat_template(messages, return_dict=True)["input_ids"])

    path = pairs_file(tmp_path / "pairs.jsonl", [GOOD, IMPLICIT])
    # the implicit pair's prompt counts once: the user turn, then one answer
    chosen = [tokens([USER, *GOOD["chosen"]]), tokens(IMPLICIT["chosen"])]
    rejected = [tokens([USER, *GOOD["rejected"]]), tokens(IMPLICIT["rejected"])]
    limit = max(rejected) - 1
    argv = ["data", "validate", str(path), "--tokenizer", str(tokenizer)]
    assert main([*argv, "--max-length", str(limit)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: 2 pairs, 0 problem(s)"
    assert out[1].startswith(f"{path}: prompt + chosen: tokens per pair: min {min(chosen)}, ")
    assert out[1].endswith(f"max {max(chosen)}; {sum(n > limit for n in chosen)} over {limit}")
    assert out[2].startswith(f"{path}: prompt + rejected: tokens per pair: min {min(rejected)}, ")
    assert out[2].endswith(f"max {max(rejected)}; {sum(n > limit for n in rejected)} over {limit}")
    parquet = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist([GOOD, GOOD]), parquet)
    assert main(["data", "validate", str(parquet), "--tokenizer", str(tokenizer)]) == 0
    assert f"max {tokens([USER, *GOOD['rejected']])}; 0 over 2048" in capsys.readouterr().out
