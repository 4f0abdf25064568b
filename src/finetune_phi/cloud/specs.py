"""Render azure-ai-ml entities as the plain YAML their own loaders accept.

`entity._to_dict()` holds OrderedDicts and None values that `load_job` and friends reject;
this turns it into plain, None-free data. The YAML printed by every `--dry-run` is this.
"""

from __future__ import annotations

from typing import Any

import yaml


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items() if v is not None and v != {}}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def to_yaml(entity: Any) -> str:
    """YAML of an azure-ai-ml entity (a job, a deployment, ...), loadable by its `load_*`."""
    return yaml.safe_dump(plain(entity._to_dict()), sort_keys=False)
