"""Chat data: the format the fine-tune expects (`chat_format`), its preparation from
ultrachat_200k or a local file (`prepare`), token-length statistics (`token_lengths`), and a
small shipped sample (`samples/`)."""

from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "samples" / "chat_sample.jsonl"
"""45 chat conversations shipped with the package: the rehearsal's and the tests' data."""
