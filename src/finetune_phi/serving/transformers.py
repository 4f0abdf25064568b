"""The `transformers` engine: Hugging Face transformers' `generate` on the MLflow model.

On this machine it runs in the local front (jobs/score/server.py), which speaks OpenAI's chat
completions and the scoring contract; in a managed deployment our `jobs/score/score.py` runs
in Azure ML's inference server, azureml-inference-server-http, behind the scoring contract.
"""

from __future__ import annotations

import sys

from finetune_phi.core.folders import (
    SCORE_REQUIREMENTS,
    SCORE_SERVER_ENVIRONMENT,
    SCORE_SOURCE,
    SERVING_FRONT,
)
from finetune_phi.serving.engine import (
    CHAT_COMPLETIONS_PATH,
    SERVED_MODEL,
    Engine,
    LocalServer,
    ManagedDeployment,
    Probes,
    ScoringCode,
    instance_type_variable,
)

SCORING_SCRIPT = "score.py"


def command(host: str, port: int) -> list[str]:
    return [
        *(sys.executable, str(SERVING_FRONT), "--engine", "transformers"),
        *("--host", host, "--port", str(port), "--served-model-name", SERVED_MODEL),
    ]


ENGINE = Engine(
    name="transformers",
    summary="Hugging Face generate, one request at a time (the scoring contract on Azure)",
    apis=("score",),
    local=LocalServer(
        command=command,
        environment={},
        routes={"chat-completions": CHAT_COMPLETIONS_PATH, "score": "/score"},
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
        instance_variables=instance_type_variable,
    ),
)
