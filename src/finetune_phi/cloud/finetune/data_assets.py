"""The training and eval (held-out) data as Azure ML data assets, versioned by their content hash,
so a re-submit of the same files uploads nothing: chat data as `phi-chat-train` and
`phi-chat-eval`, DPO's preference pairs as `phi-preference-train` and `phi-preference-eval`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finetune_phi.cloud.finetune.trainers import DEFAULT_TRAINER, require_data, trainer


def content_version(path: Path) -> str:
    """A data asset version that changes exactly when the file's content does."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def check_files(train_file: Path, eval_file: Path, name: str = DEFAULT_TRAINER) -> None:
    """Both files, read line by line with `phi data validate`'s rules for the trainer's data
    (chat rows, or preference pairs for DPO), before anything is uploaded: bad data never
    reaches a billed GPU."""
    for flag, path in (("--train-file", train_file), ("--eval-file", eval_file)):
        require_data(path, flag, name)


def data_assets(train_file: Path, eval_file: Path, name: str = DEFAULT_TRAINER) -> dict[str, Any]:
    """The two files as versioned uri_file data assets, keyed by job input name, named by the
    trainer's data (`phi-chat-train`, `phi-preference-train`)."""
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Data

    task = trainer(name).task
    return {
        input_name: Data(
            name=f"phi-{task}-{kind}",
            version=content_version(path),
            path=str(path),
            type=AssetTypes.URI_FILE,
            description=f"{task.capitalize()} {kind} data for finetune-phi ({path.name}).",
        )
        for input_name, kind, path in (
            ("train_data", "train", train_file),
            ("eval_data", "eval", eval_file),
        )
    }


def reference(asset: Any) -> str:
    """How a job names a data asset: `azureml:<name>:<version>`."""
    return f"azureml:{asset.name}:{asset.version}"


def references(train_file: Path, eval_file: Path) -> dict[str, str]:
    """How a job names the two (chat) files' assets, keyed by job input name."""
    return {name: reference(asset) for name, asset in data_assets(train_file, eval_file).items()}


def upload_missing(ml_client: Any, assets: dict[str, Any], log: Callable[[str], None]) -> None:
    """Create the assets the workspace does not have yet; the others are not uploaded again."""
    from azure.core.exceptions import ResourceNotFoundError

    for asset in assets.values():
        try:
            ml_client.data.get(name=asset.name, version=asset.version)
            log(f"data asset {asset.name}:{asset.version} exists; not uploading again")
        except ResourceNotFoundError:
            ml_client.data.create_or_update(asset)
            log(f"uploaded data asset {asset.name}:{asset.version}")
