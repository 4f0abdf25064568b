"""The `transformers` engine: our `jobs/score/score.py` (Hugging Face transformers behind the
scoring contract) in Azure ML's inference server, azureml-inference-server-http, the same
server on this machine and in a managed deployment."""

from __future__ import annotations

import sys

from finetune_phi.core.folders import SCORE_REQUIREMENTS, SCORE_SERVER_ENVIRONMENT, SCORE_SOURCE
from finetune_phi.serving.engine import Engine, LocalServer, ManagedDeployment, Probes, ScoringCode

SCORING_SCRIPT = "score.py"


def command(host: str, port: int) -> list[str]:
    """The inference server, bound to `host` (it binds 0.0.0.0 by itself)."""
    return [
        sys.executable,
        "-m",
        "finetune_phi.local.inference_server",
        host,
        "--entry_script",
        str(SCORE_SOURCE / SCORING_SCRIPT),
        "--port",
        str(port),
    ]


ENGINE = Engine(
    name="transformers",
    summary="score.py in azureml-inference-server-http (the scoring contract)",
    apis=("score",),
    local=LocalServer(
        command=command,
        environment=SCORE_SERVER_ENVIRONMENT,
        ready_path="/",
        scoring_path="/score",
    ),
    managed=ManagedDeployment(
        runtime=ScoringCode(
            folder=SCORE_SOURCE,
            scoring_script=SCORING_SCRIPT,
            requirements=SCORE_REQUIREMENTS,
            environment_name="finetune-phi-score",
        ),
        environment_variables=SCORE_SERVER_ENVIRONMENT,
        # One generation at a time per instance; the worker's other threads answer probes.
        max_concurrent_requests=1,
        probes=Probes(),
    ),
)
