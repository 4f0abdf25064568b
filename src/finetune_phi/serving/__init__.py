"""Serving engines: what serves a fine-tuned MLflow model folder, on this machine (`phi serve`)
and on the stack's managed online endpoint (`phi deploy`), and which contract its clients
speak (`finetune_phi.cloud.endpoints`).

One module per engine, each holding one `Engine` (the shape is in `engine.py`) named ENGINE;
a new engine is its module and its line in ENGINES. `--engine` of `phi serve` and
`phi deploy` offers what ENGINES holds.
"""

from __future__ import annotations

from finetune_phi.serving import transformers, vllm
from finetune_phi.serving.engine import Engine

ENGINES: dict[str, Engine] = {
    transformers.ENGINE.name: transformers.ENGINE,
    vllm.ENGINE.name: vllm.ENGINE,
}
DEFAULT_ENGINE = transformers.ENGINE.name
