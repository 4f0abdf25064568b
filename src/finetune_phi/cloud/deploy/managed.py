"""`phi deploy`: register the fine-tuned model and roll it out blue/green on the stack's endpoint.

1. Register the model from the fine-tune job's named output (`azureml://jobs/JOB/outputs/model`),
   as a new version of `phi-finetuned`.
2. Create the new deployment (`blue`, or `green` while `blue` is live) beside the live one,
   and wait until Azure reports it healthy (its liveness and readiness probes pass).
3. Only then route 100 % of traffic to it, in one update of the endpoint's traffic.
4. Delete the deployments that no longer get traffic.

Live traffic never drops to 0 % and the endpoint itself (owned by Pulumi) is never deleted
or recreated, so its URL and key stay. A deployment that never becomes healthy stops the
rollout before any traffic moves.

The deployment runs a serving engine (finetune_phi.serving): its scoring code or container,
environment, request settings and probes come from the engine. `phi deploy` records which
engine the live deployment runs, and the endpoint clients speak that engine's contract.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from finetune_phi.cloud.deploy import check_instance_type
from finetune_phi.cloud.environment import environment, tags
from finetune_phi.cloud.finetune import MODEL_OUTPUT
from finetune_phi.core import state
from finetune_phi.core.azure_facts import DEFAULT_CPU_SERVING_VM, DEFAULT_SERVING_VM, VM_SIZES
from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.serving import DEFAULT_ENGINE, ENGINES
from finetune_phi.serving.engine import Engine, ScoringCode

MODEL_NAME = "phi-finetuned"
COLOURS = ("blue", "green")
INSTANCE_TYPES = {"gpu": DEFAULT_SERVING_VM, "cpu": DEFAULT_CPU_SERVING_VM}
# A 3.8B model takes minutes to load: probes wait 10 minutes before the first check.
PROBE_INITIAL_DELAY_S = 600


class RolloutError(PhiError):
    """The rollout stopped; the message says where traffic is and what to do."""


@dataclass(frozen=True)
class DeployRequest:
    job: str
    instance_type: str = DEFAULT_SERVING_VM
    instance_count: int = 1
    request_timeout_ms: int = 90_000
    model_name: str = MODEL_NAME
    engine: str = DEFAULT_ENGINE
    safety: Mapping[str, str] = field(default_factory=dict)
    """How the model earned its traffic, as the deployment's tags: a safety pass (the
    report's SHA-256) or the risk accepted without one (the reason)."""

    def check(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", self.job):
            raise UsageError(f"--job {self.job!r}: a job name holds letters, digits, '_' and '-'")
        check_instance_type(self.instance_type)
        if not 1 <= self.instance_count <= 20:
            raise UsageError(f"--instance-count {self.instance_count}: must be between 1 and 20")
        if not 1_000 <= self.request_timeout_ms <= 180_000:
            raise UsageError(
                f"--request-timeout-ms {self.request_timeout_ms}: must be between 1000 and 180000 "
                "(Azure ML's limit for managed online endpoints)"
            )
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,255}", self.model_name):
            raise UsageError(f"--model-name {self.model_name!r}: letters, digits, '_', '-' and '.'")
        if self.engine not in ENGINES:
            raise UsageError(f"--engine {self.engine!r}: one of {', '.join(sorted(ENGINES))}")
        if ENGINES[self.engine].managed.needs_gpu and not VM_SIZES[self.instance_type].gpus:
            raise UsageError(
                f"--instance-type {self.instance_type}: --engine {self.engine} needs a GPU size, "
                f"e.g. {DEFAULT_SERVING_VM}"
            )


def model_entity(request: DeployRequest) -> Any:
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Model

    return Model(
        name=request.model_name,
        path=f"azureml://jobs/{request.job}/outputs/{MODEL_OUTPUT}",
        type=AssetTypes.MLFLOW_MODEL,
        description=f"Phi fine-tuned by Azure ML job {request.job}.",
        tags=tags(job=request.job),
    )


def runtime_entities(engine: Engine) -> tuple[Any, Any]:
    """(code configuration, environment): our scoring code on the base image, or the
    engine's own image with Azure ML's routes to it (and no code)."""
    from azure.ai.ml.entities import BuildContext, CodeConfiguration, Environment

    runtime = engine.managed.runtime
    if isinstance(runtime, ScoringCode):
        code = CodeConfiguration(code=str(runtime.folder), scoring_script=runtime.scoring_script)
        return code, environment(runtime.requirements, runtime.environment_name)
    routes = {
        "liveness_route": runtime.liveness_path,
        "readiness_route": runtime.readiness_path,
        "scoring_route": runtime.scoring_path,
    }
    inference_config = {
        route: {"port": runtime.port, "path": path} for route, path in routes.items()
    }
    if runtime.build is not None:
        built = Environment(
            name=f"finetune-phi-{engine.name}",
            build=BuildContext(path=str(runtime.build), dockerfile_path=runtime.dockerfile),
            inference_config=inference_config,
        )
        return None, built
    return None, Environment(image=runtime.image, inference_config=inference_config)


def deployment_entity(
    request: DeployRequest, *, name: str, endpoint: str, model: Any, identity_client_id: str
) -> Any:
    from azure.ai.ml.entities import ManagedOnlineDeployment, OnlineRequestSettings, ProbeSettings

    engine = ENGINES[request.engine]
    probes = engine.managed.probes

    def probe(period: int) -> Any:
        return ProbeSettings(
            initial_delay=PROBE_INITIAL_DELAY_S,
            period=period,
            timeout=probes.timeout_s,
            failure_threshold=probes.failure_threshold,
        )

    code_configuration, runtime_environment = runtime_entities(engine)
    return ManagedOnlineDeployment(
        name=name,
        endpoint_name=endpoint,
        model=model,
        code_configuration=code_configuration,
        environment=runtime_environment,
        instance_type=request.instance_type,
        instance_count=request.instance_count,
        request_settings=OnlineRequestSettings(
            request_timeout_ms=request.request_timeout_ms,
            max_concurrent_requests_per_instance=engine.managed.max_concurrent_requests,
        ),
        liveness_probe=probe(probes.liveness_period_s),
        readiness_probe=probe(probes.readiness_period_s),
        # The endpoint runs as the stack's user-assigned identity; DefaultAzureCredential in
        # the container needs its client id to pick it.
        environment_variables={
            "AZURE_CLIENT_ID": identity_client_id,
            "HF_HUB_OFFLINE": "1",
            **engine.managed.environment_variables,
            **engine.managed.instance_variables(request.instance_type),
        },
        app_insights_enabled=True,
        tags=tags(job=request.job, **request.safety),
    )


def next_colour(existing: list[str], live: dict[str, int]) -> str:
    """The colour to deploy: one without traffic, preferring one that does not exist yet."""
    free = [colour for colour in COLOURS if live.get(colour, 0) == 0]
    if not free:
        raise RolloutError("both blue and green take traffic; shift it to one of them first")
    return next((colour for colour in free if colour not in existing), free[0])


def _endpoint_state(ml_client: Any, endpoint_name: str) -> tuple[Any, list[str], dict[str, int]]:
    """(endpoint, its deployments' names, the deployments taking traffic), read now."""
    endpoint = ml_client.online_endpoints.get(endpoint_name)
    existing = [d.name for d in ml_client.online_deployments.list(endpoint_name=endpoint_name)]
    live = {name: share for name, share in (endpoint.traffic or {}).items() if share > 0}
    return endpoint, existing, live


def rollout(
    ml_client: Any,
    request: DeployRequest,
    *,
    endpoint_name: str,
    identity_client_id: str,
    log: Callable[[str], None] = print,
    gate: Callable[[str], None] | None = None,
) -> str:
    """Steps 1-4 of the module docstring; returns the deployment now taking all traffic.
    `gate(deployment)`, when given, runs once the new deployment is healthy and before any
    traffic moves: a PhiError from it stops the rollout with traffic unchanged."""
    model = ml_client.models.create_or_update(model_entity(request))
    log(f"registered model {model.name}:{model.version} from job {request.job}")

    # Read the deployments right before choosing a colour, and again right before creating
    # it: a deployment that takes traffic is never updated in place.
    endpoint, existing, live = _endpoint_state(ml_client, endpoint_name)
    colour = next_colour(existing, live)
    deployment = deployment_entity(
        request,
        name=colour,
        endpoint=endpoint_name,
        model=f"azureml:{model.name}:{model.version}",
        identity_client_id=identity_client_id,
    )
    log(
        f"creating deployment {colour} ({request.engine}) on {request.instance_count} x {request.instance_type}; traffic stays on {live or 'nothing'}"
    )
    if _endpoint_state(ml_client, endpoint_name)[2].get(colour, 0) > 0:
        raise RolloutError(
            f"deployment {colour} began taking traffic while this rollout ran (another phi "
            "deploy?); nothing was changed: run phi deploy again once it has finished"
        )
    failure = None
    try:
        ml_client.online_deployments.begin_create_or_update(deployment).result()
        state = ml_client.online_deployments.get(
            name=colour, endpoint_name=endpoint_name
        ).provisioning_state
        if state != "Succeeded":
            failure = f"its provisioning state is {state}"
    except Exception as error:  # any failure stops the rollout the same way
        failure = str(error).splitlines()[0] if str(error) else type(error).__name__
    if failure is not None:
        raise RolloutError(
            f"deployment {colour} did not become healthy ({failure}); traffic is unchanged "
            f"({live or 'no traffic'}). Logs: az ml online-deployment get-logs --endpoint-name "
            f"{endpoint_name} --name {colour}; then delete it or run phi deploy again."
        )
    if gate is not None:
        try:
            gate(colour)
        except PhiError as error:
            raise RolloutError(
                f"deployment {colour} is healthy but failed its check: {error}; traffic is "
                f"unchanged ({live or 'no traffic'}). Delete it or run phi deploy again."
            ) from None

    endpoint.traffic = {name: (100 if name == colour else 0) for name in {*existing, colour}}
    ml_client.online_endpoints.begin_create_or_update(endpoint).result()
    log(f"routed 100 % of traffic to {colour}")
    for old in sorted(set(existing) - {colour}):
        ml_client.online_deployments.begin_delete(name=old, endpoint_name=endpoint_name).result()
        log(f"deleted deployment {old}")
    return colour


def plan_yaml(request: DeployRequest, *, endpoint_name: str, identity_client_id: str) -> str:
    """The dry run: model, deployment and traffic plan as three YAML documents."""
    import yaml

    from finetune_phi.cloud.specs import plain, to_yaml

    model = model_entity(request)
    deployment = deployment_entity(
        request,
        name="blue",
        endpoint=endpoint_name,
        model=model,
        identity_client_id=identity_client_id,
    )
    traffic = {
        "endpoint": endpoint_name,
        "deployment": "blue, or green while blue takes traffic",
        "steps": [
            "register the model from the job's output as a new version",
            "create the deployment beside the live one and wait until it is healthy",
            "route 100 % of traffic to it in one update",
            "delete the deployments left without traffic",
        ],
        "on_failure": "stop before any traffic moves",
    }
    return "---\n".join(
        [
            yaml.safe_dump(plain(model._to_dict()), sort_keys=False),
            to_yaml(deployment),
            yaml.safe_dump(traffic, sort_keys=False),
        ]
    )


def record_live(
    workspace: str,
    endpoint: str,
    deployment: str,
    engine: str,
    *,
    job: str | None = None,
    safety: Mapping[str, str] | None = None,
) -> None:
    """Note, for the endpoint clients, that `deployment` (running `engine`) takes all of
    `endpoint`'s traffic; and, for the team, which job's model it serves and on what safety
    grounds (a pass, or the risk accepted and why)."""
    entry: dict[str, Any] = {"endpoint": endpoint, "deployment": deployment, "engine": engine}
    if job is not None:
        entry["job"] = job
    if safety is not None:
        entry["safety"] = dict(safety)
    state.record(workspace, state.LIVE_DEPLOYMENT, entry)


def live_engine(workspace: str, endpoint: str) -> Engine:
    """The engine of the deployment `phi deploy` last routed `endpoint`'s traffic to from this
    folder; the default engine when none is recorded (a deployment made before engines were
    recorded, or from elsewhere)."""
    entry = state.recall(workspace, state.LIVE_DEPLOYMENT)
    if entry is None or (isinstance(entry, dict) and entry.get("endpoint") != endpoint):
        return ENGINES[DEFAULT_ENGINE]
    name = entry.get("engine") if isinstance(entry, dict) else None
    if not isinstance(name, str) or name not in ENGINES:
        raise UsageError(
            f"{state.state_file()} records engine {name!r} for endpoint {endpoint}, which this "
            f"phi does not know (it knows {', '.join(sorted(ENGINES))}): run phi deploy "
            f"again, or delete {state.LIVE_DEPLOYMENT!r} there"
        )
    return ENGINES[name]
