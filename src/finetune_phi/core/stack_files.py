"""A stack's configuration as its files hold it (`Pulumi.<stack>.yaml`), read without the
Pulumi CLI: for preflight checks and cost reports that run before `pulumi up`."""

from __future__ import annotations

from pathlib import Path

import yaml

from finetune_phi.core.contract import PROJECT


class StackFileError(ValueError):
    """The stack file is missing or not a Pulumi stack file."""


def read_config(project_dir: Path, stack: str) -> dict[str, str]:
    """The `finetune-phi:*` values of `Pulumi.<stack>.yaml`, keys without the namespace;
    defaults are applied later, by `finetune_phi.core.config.parse`."""
    path = project_dir / f"Pulumi.{stack}.yaml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise StackFileError(f"{path}: no such stack file (is --stack {stack!r} right?)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise StackFileError(f"{path}: not a readable stack file ({error})") from None
    config = document.get("config") if isinstance(document, dict) else None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise StackFileError(f"{path}: 'config' must be a mapping of keys to values")
    namespace = f"{PROJECT}:"
    return {
        key.removeprefix(namespace): str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in config.items()
        if isinstance(key, str) and key.startswith(namespace)
    }
