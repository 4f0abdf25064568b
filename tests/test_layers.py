"""The house's rules, read from the code: each top-level folder has one role and takes shared
code from `finetune_phi` only; inside the package, layers import downwards only."""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

TOP_LEVEL = ("infra", "jobs", "flow", "policy")
SOURCE = ROOT / "src" / "finetune_phi"
# Each subpackage of finetune_phi and what it may import of its siblings: the command line on
# top; Azure operations, the local runtime, evaluation and data below it; `core` at the bottom.
MAY_IMPORT = {
    "core": set(),
    "serving": {"core"},
    "endpoint_client": set(),
    "data": {"core"},
    "safety": {"core", "data", "endpoint_client"},
    "evaluation": {"core", "data", "endpoint_client"},
    "local": {"core", "data", "serving", "endpoint_client", "evaluation"},
    "cloud": {"core", "data", "serving", "endpoint_client"},
    "cli": {
        *("core", "data", "safety", "serving", "endpoint_client", "evaluation", "local", "cloud"),
    },
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", TOP_LEVEL)
def test_no_top_level_folder_imports_a_sibling(folder: str) -> None:
    others = set(TOP_LEVEL) - {folder}
    crossing = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / folder).rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in others
    }
    assert not crossing


def test_the_package_imports_downwards_only() -> None:
    upward = set()
    for path in SOURCE.rglob("*.py"):
        layer = path.relative_to(SOURCE).parts[0].removesuffix(".py")
        if layer not in MAY_IMPORT:
            continue
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] != "finetune_phi" or len(parts) < 2:
                continue
            target = parts[1]
            if target != layer and target in MAY_IMPORT and target not in MAY_IMPORT[layer]:
                upward.add(f"{path.relative_to(ROOT)}: {name}")
    assert not upward


def test_the_package_imports_nothing_from_the_folders_it_carries() -> None:
    reaching = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in SOURCE.rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in TOP_LEVEL
    }
    assert not reaching


def test_venv_infra_keeps_an_environment_that_has_every_stage() -> None:
    stamp = ROOT / ".venv" / ".installed-dev"
    if (
        not stamp.is_file()
        or stamp.stat().st_mtime < (ROOT / "requirements" / "dev.txt").stat().st_mtime
    ):
        pytest.skip("needs .venv built by `make venv` from the current lock")
    python = ROOT / ".venv" / "bin" / "python"
    before = python.stat().st_ino
    result = subprocess.run(
        ["make", "--no-print-directory", "venv-infra"],
        cwd=ROOT,
        env={**os.environ, "MAKEFLAGS": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ".venv already has every stage, infra included"
    assert python.stat().st_ino == before
    assert stamp.is_file()
