"""A fine-tune job after `phi finetune submit`: list, status, logs, cancel and download, each
through azure-ai-ml's own job operations (`MLClient.jobs`), and each with a dry run that
names the SDK call and the first request it would send, built by the SDK itself on a
transport that sends nothing.

Which job: the one named, or the last one `phi finetune submit` recorded for the workspace
(`finetune_phi.core.state`). What `download` brings back is the job's MLflow model (its named
output `model`, for the custom and catalog methods alike), as a folder `phi eval --candidate`
and `phi serve --model` take.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from finetune_phi.cloud.finetune import MODEL_OUTPUT
from finetune_phi.core import state
from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.core.stack_outputs import Workspace

NO_JOB = "no job recorded: pass JOB or submit one first"
FINISHED_WELL = "Completed"
SERVERLESS_OUTPUT = "registered_model"
"""The output of azure-ai-ml's fine-tuning-as-a-service job: a model the service registers."""
MAX_LIST = 1000


def job_name(workspace: Workspace, given: str | None) -> str:
    """`given`, or the job `phi finetune submit` last recorded for `workspace`."""
    if given:
        return given
    recorded = state.recall(workspace.state_key, state.LAST_FINETUNE_JOB)
    if not recorded:
        raise UsageError(
            f"{NO_JOB} (`phi finetune submit` records it in {state.state_file()} for "
            f"workspace {workspace.name})"
        )
    return str(recorded)


# --- dry runs -------------------------------------------------------------------------------


class _Planned(BaseException):
    """The first request an SDK call would send; raised past the SDK's own handlers."""

    def __init__(self, method: str, url: str) -> None:
        super().__init__(f"{method} {url}")
        self.method = method
        self.url = url


class _NoCredential:
    """A credential for the dry run's client: a placeholder token, never sent anywhere."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("dry-run", int(time.time()) + 3600)


@dataclass(frozen=True)
class Call:
    """One azure-ai-ml job operation: `MLClient.jobs.<operation>(*args, **kwargs)`."""

    operation: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    def __str__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs]
        return f"MLClient.jobs.{self.operation}({', '.join(shown)})"


def call(operation: str, *args: Any, **kwargs: Any) -> Call:
    return Call(operation, args, tuple(kwargs.items()))


@dataclass(frozen=True)
class Plan:
    """What a job command would ask of which workspace: each azure-ai-ml call with the first
    request it sends, then what follows in words."""

    workspace: Workspace
    job: str | None
    steps: tuple[tuple[Call, str], ...]
    then: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [
            f"workspace: {self.workspace.name} (resource group {self.workspace.resource_group}, "
            f"subscription {self.workspace.subscription_id})",
            *([f"job: {self.job}"] if self.job else []),
        ]
        for sdk_call, request in self.steps:
            lines += [f"azure-ai-ml: {sdk_call}", f"  request: {request}"]
        lines += [*(f"then: {step}" for step in self.then), "dry run: nothing sent"]
        return "\n".join(lines) + "\n"


def plan(workspace: Workspace, job: str | None, *calls: Call, then: tuple[str, ...] = ()) -> Plan:
    """`calls` with the first request azure-ai-ml builds for each, on a client whose
    transport records that request and sends nothing (no credentials needed)."""
    from azure.ai.ml import MLClient
    from azure.core.pipeline.transport import HttpTransport

    class Recorder(HttpTransport[Any, Any]):
        def send(self, request: Any, **options: Any) -> Any:
            raise _Planned(request.method, request.url)

        def open(self) -> None:
            pass

        def close(self) -> None:
            pass

        def __enter__(self) -> Recorder:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    client = MLClient(
        _NoCredential(),
        workspace.subscription_id,
        workspace.resource_group,
        workspace.name,
        transport=Recorder(),
        enable_telemetry=False,
    )
    steps = []
    for sdk_call in calls:
        try:
            result = getattr(client.jobs, sdk_call.operation)(
                *sdk_call.args, **dict(sdk_call.kwargs)
            )
            next(iter(result))  # a list sends its first request when it is read
        except _Planned as planned:
            steps.append((sdk_call, f"{planned.method} {planned.url}"))
            continue
        raise AssertionError(f"{sdk_call} sent no request")  # pragma: no cover
    return Plan(workspace, job, tuple(steps), then)


# --- status and list ------------------------------------------------------------------------

METHOD_BY_TYPE = {"command": "custom", "pipeline": "catalog", "finetuning": "serverless"}
"""The `phi finetune submit --method` behind each kind of job it submits."""


def status_of(job: Any) -> str:
    """The job's status as Azure names it ("Running", "Completed"), not the enum's name."""
    value = job.status
    return str(getattr(value, "value", value) or "Unknown")


def finished(job: Any) -> bool:
    from azure.ai.ml.operations._run_history_constants import RunHistoryConstants

    return status_of(job) in {
        str(getattr(s, "value", s)) for s in RunHistoryConstants.TERMINAL_STATUSES
    }


def created(job: Any) -> str:
    context = getattr(job, "creation_context", None)
    at = getattr(context, "created_at", None)
    return at.isoformat(timespec="seconds") if at is not None else "unknown"


def method_of(job: Any) -> str:
    kind = str(getattr(job, "type", "") or "")
    return METHOD_BY_TYPE.get(kind, f"not phi's ({kind or 'unknown'} job)")


def outputs_of(job: Any) -> dict[str, str]:
    """The job's named outputs: where each is, or the model it registers."""
    found = {}
    for name, output in sorted((getattr(job, "outputs", None) or {}).items()):
        if name == "default" or output is None:
            continue
        where = getattr(output, "path", None) or getattr(output, "name", None)
        found[name] = str(where or getattr(output, "type", "") or "(no path reported)")
    return found


def status_lines(job: Any) -> list[str]:
    """What `phi finetune status` prints of one job."""
    lines = [
        f"name: {job.name}",
        f"status: {status_of(job)}",
        f"method: {method_of(job)}",
        f"display name: {job.display_name or ''}",
        f"experiment: {job.experiment_name or ''}",
        f"created: {created(job)}",
        f"studio: {job.studio_url or ''}",
    ]
    if finished(job):
        lines += [f"output {name}: {where}" for name, where in outputs_of(job).items()]
        if status_of(job) == FINISHED_WELL and MODEL_OUTPUT in (job.outputs or {}):
            lines.append(f"next: phi finetune download {job.name} --output out/model")
    return lines


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIST:
        raise UsageError(f"--max {limit}: must be between 1 and {MAX_LIST}")


def list_jobs(ml_client: Any, experiment: str | None, limit: int) -> list[Any]:
    """The experiment's jobs (None: every experiment's) in the order Azure ML lists them, at
    most `limit`: its pages are read only until that many are found."""
    check_limit(limit)
    jobs = (job for job in ml_client.jobs.list() if job is not None)
    ours = (job for job in jobs if experiment is None or job.experiment_name == experiment)
    return list(itertools.islice(ours, limit))


def list_lines(jobs: list[Any]) -> list[str]:
    rows = [("name", "status", "created", "method", "display name")]
    rows += [
        (job.name, status_of(job), created(job), method_of(job), job.display_name or "")
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    ]


# --- logs -----------------------------------------------------------------------------------


def logs_so_far(ml_client: Any, name: str) -> Iterator[tuple[str, str]]:
    """Each of the job's log files so far, with its text: the files `jobs.stream` would print
    (its own filter of run history's list: the primary process's user log; a pipeline's
    execution log), read once, without waiting for the end."""
    from azure.ai.ml._utils import utils
    from azure.ai.ml.operations._job_ops_helper import _get_sorted_filtered_logs

    job = ml_client.jobs.get(name)
    details = ml_client.jobs._runs_operations.get_run_details(name)
    files = details.log_files or {}
    pipeline = utils.create_requests_pipeline_with_retry(
        requests_pipeline=ml_client.jobs._requests_pipeline
    )
    for log in _get_sorted_filtered_logs(files, str(job.type or "command")):
        yield log, utils.download_text_from_url(files[log], pipeline)


def print_logs(ml_client: Any, name: str, out: TextIO) -> int:
    """The logs so far on `out`, each file under its name; how many files there were."""
    count = 0
    for log, text in logs_so_far(ml_client, name):
        count += 1
        out.write(f"==> {log} <==\n{text}")
        if text and not text.endswith("\n"):
            out.write("\n")
    return count


def follow(ml_client: Any, name: str) -> None:
    """Stream the logs until the job ends (azure-ai-ml's `jobs.stream`); a failed job is a
    PhiError naming it."""
    from azure.ai.ml.exceptions import JobException

    try:
        ml_client.jobs.stream(name)
    except JobException as error:
        first = (str(error).strip().splitlines() or ["failed"])[0]
        raise PhiError(f"job {name}: {first}") from None


# --- cancel ---------------------------------------------------------------------------------


def cancel(ml_client: Any, name: str) -> str:
    """Ask Azure to cancel the job, and wait until it has accepted; a job already finished is
    left alone. What happened, in words."""
    job = ml_client.jobs.get(name)
    if finished(job):
        return f"job {name} has already finished ({status_of(job)}): nothing to cancel"
    ml_client.jobs.begin_cancel(name).result()
    return f"job {name}: cancel accepted; Azure stops it (phi finetune status {name})"


# --- download -------------------------------------------------------------------------------


def check_output(output: Path, force: bool) -> None:
    """Refuse an output folder that holds something (unless `force`), or a file in its place."""
    if output.is_file() or (output.exists() and not output.is_dir()):
        raise UsageError(f"--output {output}: a file is there; name a folder")
    if output.is_dir() and any(output.iterdir()) and not force:
        raise UsageError(
            f"--output {output} is not empty: pass --force to replace it, or name another folder"
        )


def model_output(job: Any) -> str:
    """The job's output that holds its MLflow model; PhiError saying why when it has none."""
    outputs = job.outputs or {}
    if method_of(job) == "serverless":
        registered = outputs.get(SERVERLESS_OUTPUT)
        model = getattr(registered, "name", None) or "its output model"
        raise PhiError(
            f"job {job.name} is a serverless fine-tune: the service registers {model} in the "
            "Foundry project and hands out no model folder; serve it with "
            "`phi deploy --serverless` and evaluate it with `phi eval --candidate stack "
            "--serverless`"
        )
    if MODEL_OUTPUT not in outputs:
        names = ", ".join(sorted(n for n in outputs if n != "default")) or "none"
        raise PhiError(
            f"job {job.name} has no output {MODEL_OUTPUT!r} (its outputs: {names}): not a "
            "phi fine-tune"
        )
    return MODEL_OUTPUT


def mlflow_folder(folder: Path) -> Path | None:
    """The folder holding `MLmodel`: `folder` itself or its `model/`, as `phi eval` and
    `phi serve` look for it."""
    return next((p for p in (folder, folder / "model") if (p / "MLmodel").is_file()), None)


def download(
    ml_client: Any,
    name: str,
    output: Path,
    *,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """The finished job's MLflow model at `output`: downloaded (`jobs.download`) into a
    temporary folder beside it, checked for an `MLmodel` file, then renamed into place, so
    `output` is never half written and a refused one keeps what it held."""
    from azure.ai.ml.exceptions import MlException

    check_output(output, force)
    job = ml_client.jobs.get(name)
    if status_of(job) != FINISHED_WELL:
        hint = "" if finished(job) else f"; follow it with phi finetune logs {name} --follow"
        raise PhiError(f"job {name} is {status_of(job)}: only a Completed job has a model{hint}")
    output_name = model_output(job)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        log(f"downloading job {name}'s output {output_name!r} ...")
        try:
            ml_client.jobs.download(name=name, output_name=output_name, download_path=staging)
        except MlException as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise PhiError(f"job {name}: the download failed ({first})") from None
        fetched = staging / "named-outputs" / output_name
        if not fetched.is_dir():
            raise PhiError(
                f"job {name}: Azure ML found no files for its output {output_name!r}; "
                "see the job's outputs in the studio"
            )
        if mlflow_folder(fetched) is None:
            raise PhiError(
                f"job {name}: its output {output_name!r} holds no MLmodel file, so it is not "
                "an MLflow model; nothing was written to " + str(output)
            )
        _swap_into_place(fetched, output, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def _swap_into_place(new: Path, output: Path, staging: Path) -> None:
    """Rename `new` to `output`; what `output` held moves into `staging` first (and back if
    the rename fails)."""
    previous = staging / "previous"
    if output.exists():
        os.replace(output, previous)
    try:
        os.replace(new, output)
    except OSError:
        if previous.exists():
            os.replace(previous, output)
        raise
