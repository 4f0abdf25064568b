"""Pulumi.yaml and the README say exactly what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from infra.contract import OUTPUTS
from infra.settings import SETTINGS
from tests.support import ROOT

README = (ROOT / "README.md").read_text()


def _table_rows(heading: str) -> dict[str, list[str]]:
    """First column (without backticks) -> other columns, of the first table under `heading`."""
    section = README.split(f"\n## {heading}\n", 1)[1]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells[1:]
        elif rows and not line.startswith("|"):
            break
    return rows


def test_pulumi_yaml_declares_every_setting_with_its_default_and_description() -> None:
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert list(declared) == [setting.key for setting in SETTINGS]
    for setting in SETTINGS:
        entry = declared[setting.key]
        assert entry["type"] == setting.kind.value, setting.key
        assert entry["description"] == setting.description, setting.key
        assert entry.get("default") == setting.default, setting.key


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_stacks_only_use_declared_keys(stack: str) -> None:
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    known = {f"finetune-phi:{setting.key}" for setting in SETTINGS}
    assert set(config) <= known


def test_readme_configuration_table_matches_the_settings() -> None:
    rows = _table_rows("Configuration")
    assert list(rows) == [setting.key for setting in SETTINGS]
    for setting in SETTINGS:
        default, description = rows[setting.key]
        assert description == setting.description, setting.key
        if setting.default is not None:
            shown = (
                str(setting.default).lower()
                if isinstance(setting.default, bool)
                else str(setting.default)
            )
            assert default == f"`{shown}`", setting.key


def test_readme_outputs_table_matches_the_contract() -> None:
    rows = _table_rows("Outputs")
    assert {key: cells[0] for key, cells in rows.items()} == OUTPUTS


def test_readme_quick_start_test_command_is_what_ci_runs() -> None:
    quick_start = README.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(make \w+)", quick_start, re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[:2] == ["make rehearse", "make test"]
    assert re.search(r"^make test$", ci, re.M)


def test_readme_states_the_scoring_limits_the_code_enforces() -> None:
    from jobs.uploads.score.contract import MAX_BATCH, MAX_NEW_TOKENS, GenerationParameters

    contract = README.split("\n## Scoring contract\n", 1)[1].split("\n## ", 1)[0]
    defaults = GenerationParameters()
    assert f"`max_new_tokens` 1-{MAX_NEW_TOKENS} ({defaults.max_new_tokens})" in contract
    assert f"(1-{MAX_BATCH} questions)" in contract
    assert f"`temperature` 0-2 (default {defaults.temperature:g})" in contract
    assert "curl" in contract


def test_every_path_the_layout_table_names_exists() -> None:
    layout = README.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    named = 0
    for line in layout.splitlines():
        if not line.startswith("| `"):
            continue
        first, description = line.strip("|").split(" | ", 1)
        folders = re.findall(r"`([^`]+)`", first)
        for folder in folders:
            assert (ROOT / folder).exists(), folder
            named += 1
        # Files a folder's description names are relative to that folder.
        for name in re.findall(r"`([\w/.-]+\.(?:py|yaml))`", description):
            parent = ROOT / folders[0] if folders[0].endswith("/") else ROOT
            found = list(parent.rglob(Path(name).name)) if "/" not in name else [parent / name]
            assert any(path.exists() for path in found), (folders[0], name)
            named += 1
    assert named > 40


def test_readme_states_the_request_limits_the_contract_enforces() -> None:
    from jobs.uploads.score.contract import (
        MAX_INTEGER_DIGITS,
        MAX_MESSAGE_CHARS,
        MAX_MESSAGES,
        MAX_REQUEST_BYTES,
    )

    contract = README.split("\n## Scoring contract\n", 1)[1].split("\n## ", 1)[0]
    assert f"a body of at most {MAX_REQUEST_BYTES} bytes" in contract
    assert f"at most {MAX_MESSAGES} messages of at most {MAX_MESSAGE_CHARS}" in contract
    assert f"integers of at most {MAX_INTEGER_DIGITS}" in contract
