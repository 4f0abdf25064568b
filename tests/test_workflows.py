"""The GitHub workflows (.github/workflows): valid, audited, and shaped as the docs say.

Offline: check-jsonschema's vendored GitHub workflow schema, zizmor's offline audits (the
pedantic persona, and the auditor's), the structure a platform team relies on, parsed from
the files, and every `phi` command line in them, parsed by phi's own parser.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from finetune_phi.cli import data as data_command
from finetune_phi.cli import deploy as deploy_command
from finetune_phi.cli import eval as eval_command
from finetune_phi.cli import finetune as finetune_command
from finetune_phi.cli.main import build_parser
from finetune_phi.cloud.finetune.custom import DEFAULT_MODEL
from tests.support import BIN, ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
README = (ROOT / "README.md").read_text()
DELIVERY = (ROOT / "docs" / "how-to" / "github-delivery.md").read_text()
"""The how-to guide that sets GitHub up for these workflows."""
STACKS = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
PULUMI_ACTION = "pulumi/actions"
OIDC_ACTIONS = {"pulumi/auth-actions", "azure/login"}
PIN = re.compile(r"^\s*-?\s*uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)$")
# A workflow of this repository, at the calling workflow's own commit (GitHub's `$/`).
SELF = re.compile(r"^\s*uses: \$/\.github/workflows/[\w-]+\.yml$")


def load(name: str) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True)
    return document


def all_workflows() -> dict[str, dict[str, Any]]:
    return {path.name: load(path.name) for path in sorted(WORKFLOWS.glob("*.yml"))}


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job.get("steps", []) if s.get("uses", "").split("@")[0].lower() == action]


def jobs() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for file, workflow in all_workflows().items():
        for name, job in workflow["jobs"].items():
            yield file, name, job


def pulumi_commands(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's pulumi/actions steps that run a command (without one, the action only
    installs the CLI)."""
    return [s for s in steps_using(job, PULUMI_ACTION) if "command" in s.get("with", {})]


def stacks_of(job: dict[str, Any], pulumi_step: dict[str, Any]) -> list[str]:
    """The stacks a job runs Pulumi on: its matrix, or the one its stack-name names."""
    matrix = job.get("strategy", {}).get("matrix", {}).get("stack")
    if matrix:
        assert "${{ matrix.stack }}" in pulumi_step["with"]["stack-name"]
        return list(matrix)
    return [pulumi_step["with"]["stack-name"].rsplit("/", 1)[1]]


def test_workflows_validate_against_the_github_schema() -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing_even_pedantic() -> None:
    result = subprocess.run(
        [BIN / "zizmor", "--offline", "--persona", "pedantic", "--no-progress", WORKFLOWS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


def test_zizmor_as_auditor_flags_only_the_documented_self_hosted_runner() -> None:
    """The auditor persona also flags every self-hosted runner (pedantic leaves that out):
    the model deploy's GPU machine is the one, on purpose, and the guide says what it must be."""
    auditor = ["--offline", "--persona", "auditor", "--no-progress", "--format", "json"]
    result = subprocess.run(
        [BIN / "zizmor", *auditor, WORKFLOWS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = json.loads(result.stdout)
    flagged = {
        (f["ident"], Path(f["locations"][0]["symbolic"]["key"]["Local"]["verbatim_path"]).name)
        for f in findings
    }
    assert flagged == {("self-hosted-runner", "model-deploy.yml")}, findings
    self_hosted = [
        (file, name) for file, name, job in jobs() if "self-hosted" in str(job.get("runs-on"))
    ]
    assert self_hosted == [("model-deploy.yml", "deploy")]
    labels = load("model-deploy.yml")["jobs"]["deploy"]["runs-on"]
    assert f"`[{', '.join(labels)}]`" in DELIVERY, "the guide names the runner's labels"


def test_every_action_is_pinned_to_a_full_sha_with_its_version() -> None:
    pins: dict[str, set[tuple[str, str]]] = {}
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            if "uses:" not in line or SELF.match(line):
                continue
            match = PIN.match(line)
            assert match, f"{path.name}: not pinned to a SHA with its version: {line.strip()}"
            pins.setdefault(match[1].lower(), set()).add((match[2], match[3]))
    assert all(len(versions) == 1 for versions in pins.values()), pins
    assert {PULUMI_ACTION, "actions/checkout", *OIDC_ACTIONS} <= set(pins)


def test_no_secret_anywhere_and_least_permissions() -> None:
    for file, workflow in all_workflows().items():
        text = (WORKFLOWS / file).read_text()
        assert "secrets." not in text, file
        assert workflow["permissions"] == {}, f"{file}: the workflow grants nothing by default"
        for name, job in workflow["jobs"].items():
            granted = job["permissions"]
            oidc = any(steps_using(job, action) for action in OIDC_ACTIONS)
            assert granted.get("contents") == "read", (file, name)
            assert (granted.get("id-token") == "write") == oidc, (file, name)
            commenting = any(
                s.get("with", {}).get("comment-on-pr") for s in steps_using(job, PULUMI_ACTION)
            )
            assert (granted.get("pull-requests") == "write") == commenting, (file, name)
            assert set(granted) <= {"contents", "id-token", "pull-requests"}, (file, name)
            for step in job.get("steps", []):
                assert not {"creds", "client-secret"} & set(step.get("with", {})), (file, name)
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False


def test_ci_runs_the_readme_test_command_on_prs_and_main() -> None:
    ci = load("ci.yml")
    assert "pull_request" in ci["on"]
    assert ci["on"]["push"]["branches"] == ["main"]
    assert "workflow_call" in ci["on"]
    runs = [step.get("run") for job in ci["jobs"].values() for step in job["steps"]]
    assert "make test" in runs
    assert re.search(r"^make test +#", README, re.M)


QUEUES = {
    "preview": "pulumi-preview-{stack}-${{{{ github.event.pull_request.number }}}}",
    "up": "pulumi-up-{stack}",
}


def test_pulumi_runs_sign_in_by_oidc_with_the_pack_and_its_own_queue() -> None:
    infra = infra_lock_version("pulumi")
    groups: dict[str, set[str]] = {}
    seen: set[tuple[str, str]] = set()
    for file, name, job in jobs():
        for step in steps_using(job, PULUMI_ACTION):
            inputs = step["with"]
            order = [s.get("uses", "").split("@")[0] for s in job["steps"]]
            assert order.index("pulumi/auth-actions") < order.index(PULUMI_ACTION)
            (auth,) = steps_using(job, "pulumi/auth-actions")
            # A team token: what the environment's team may do, never the whole organization.
            assert auth["with"]["requested-token-type"].endswith(":access_token:team")
            assert auth["with"]["scope"] == "team:${{ vars.PULUMI_TEAM }}"
            assert inputs["pulumi-version"] == infra, "the CLI matches the locked SDK"
            if step not in pulumi_commands(job):
                # Installs the CLI, and nothing else: no program runs, no stack is touched.
                assert set(inputs) == {"pulumi-version"}, (file, name)
                continue
            env = job["env"]
            assert env["ARM_USE_OIDC"] == "true", (file, name)
            for variable in ("CLIENT_ID", "TENANT_ID", "SUBSCRIPTION_ID"):
                assert env[f"ARM_{variable}"] == f"${{{{ vars.AZURE_{variable} }}}}"
            assert inputs["refresh"] is True
            assert inputs["policyPacks"] == "policy"
            kind = "drift" if inputs.get("expect-no-changes") else inputs["command"]
            for stack in stacks_of(job, step):
                config = inputs["policyPackConfigs"].replace("${{ matrix.stack }}", stack)
                assert config == f"policy/{stack}.json"
                assert (ROOT / config).is_file()
                group = job["concurrency"]["group"].replace("${{ matrix.stack }}", stack)
                expected = QUEUES.get(kind, "pulumi-{kind}-{stack}").format(kind=kind, stack=stack)
                assert group == expected, (file, name)
                groups.setdefault(kind, set()).add(group)
                seen.add((inputs["command"], stack))
            # Only previews of a superseded push are cancelled; an update never is.
            assert job["concurrency"]["cancel-in-progress"] is (kind == "preview")
    assert {("preview", s) for s in STACKS} | {("up", s) for s in STACKS} <= seen
    # A preview or a drift check queued behind a pending update would cancel it: own queues.
    assert groups["up"].isdisjoint(groups["preview"] | groups["drift"])


def read_only_preview(workflow: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The workflow's one job, previewing every stack as its `-preview` identity, and its
    Pulumi step."""
    (job,) = workflow["jobs"].values()
    assert job["strategy"]["matrix"]["stack"] == STACKS
    assert job["environment"] == "${{ matrix.stack }}-preview"
    (step,) = pulumi_commands(job)
    assert step["with"]["command"] == "preview"
    return job, step


def test_previews_comment_on_every_pr_for_every_stack_read_only() -> None:
    preview = load("infra-preview.yml")
    assert list(preview["on"]) == ["pull_request"]
    job, step = read_only_preview(preview)
    assert step["with"]["comment-on-pr"] is True
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert not steps_using(job, "azure/login"), "a preview changes nothing, even through phi"


def test_merges_deploy_dev_then_prod_behind_its_environment() -> None:
    up = load("infra-up.yml")
    assert list(up["on"]) == ["push"]
    assert up["on"]["push"]["branches"] == ["main"]
    assert up["jobs"]["test"]["uses"] == "$/.github/workflows/ci.yml"
    jobs_by_stack = {
        stacks_of(job, pulumi_commands(job)[0])[0]: job
        for job in up["jobs"].values()
        if pulumi_commands(job)
    }
    assert sorted(jobs_by_stack) == STACKS
    assert jobs_by_stack["dev"]["environment"] == "dev"
    assert jobs_by_stack["dev"]["needs"] == "test", "nothing deploys from a red main"
    assert jobs_by_stack["prod"]["environment"] == "prod"
    assert jobs_by_stack["prod"]["needs"] == "dev"
    for stack, job in jobs_by_stack.items():
        (step,) = pulumi_commands(job)
        assert step["with"]["command"] == "up"
        doctor = next(s for s in job["steps"] if "phi doctor" in s.get("run", ""))
        assert doctor["run"].endswith(f"--stack {stack}")
        order = job["steps"]
        assert order.index(steps_using(job, "azure/login")[0]) < order.index(doctor)
        assert order.index(doctor) < order.index(step), "preflight before up"


def test_azure_login_only_where_phi_runs_after_it() -> None:
    for file, name, job in jobs():
        for login in steps_using(job, "azure/login"):
            after = job["steps"][job["steps"].index(login) + 1 :]
            assert any("phi " in s.get("run", "") for s in after), (file, name)


def test_a_daily_drift_check_fails_on_any_change() -> None:
    drift = load("infra-drift.yml")
    assert drift["on"]["schedule"][0]["cron"]
    _, step = read_only_preview(drift)
    assert step["with"]["expect-no-changes"] is True


def test_the_guide_sets_up_every_variable_and_environment_the_workflows_read() -> None:
    text = "\n".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))
    setup = DELIVERY.split("\n## One-time setup\n", 1)[1].split("\n## ", 1)[0]
    for variable in set(re.findall(r"vars\.(\w+)", text)):
        assert f"gh variable set {variable}" in setup, variable
    for stack in STACKS:
        for environment in (stack, f"{stack}-preview"):
            assert re.search(rf"^federate {environment} ", setup, re.M), environment
    # ... and every environment a job names, for each stack it may take.
    for file, name, job in jobs():
        if "environment" not in job:
            continue
        for stack in STACKS:
            environment = re.sub(r"\$\{\{ (matrix|inputs)\.stack \}\}", stack, job["environment"])
            assert re.search(rf"^federate {environment} ", setup, re.M), (file, name, environment)
    build = (ROOT / "docs" / "getting-started" / "build-the-stack.md").read_text()
    assert "pulumi preview --policy-pack policy" in build
    # The deploying identities may assign exactly the roles the stack assigns.
    from finetune_phi.core.roles import BuiltInRole

    roles = re.search(r'^STACK_ROLES="([^"]+)"$', setup, re.M)
    assert roles
    assert set(roles[1].split(", ")) == {role.value for role in BuiltInRole}


def infra_lock_version(package: str) -> str:
    lock = (ROOT / "requirements" / "infra.txt").read_text()
    match = re.search(rf"^{package}==(\S+)$", lock, re.M)
    assert match, package
    return match[1]


def test_workflow_files_are_the_ones_documented() -> None:
    names = {p.name for p in WORKFLOWS.glob("*")}
    assert names == {
        "ci.yml",
        "infra-preview.yml",
        "infra-up.yml",
        "infra-drift.yml",
        "model-deploy.yml",
    }
    for name in names:
        assert f"`{Path('.github/workflows') / name}`" in DELIVERY, name


# --- phi in the workflows: the command lines, parsed as phi parses them ---------------------

SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}
REDIRECTIONS = {">", ">>", "<", ">|", "&>", ">&"}
VARIABLE = re.compile(r"\$\{?(\w+)\}?")


def simple_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a `run:` script, as bash splits them (quotes removed), without
    their redirections. The scripts here are plain: one command list a line, continued with a
    backslash, no functions or here-documents."""
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        tokens = iter(lexer)
        for token in tokens:
            if token in SHELL_OPERATORS:
                if words:
                    yield words
                words = []
            elif token in REDIRECTIONS:
                next(tokens, None)  # the file it redirects to
            else:
                words.append(token)
        if words:
            yield words


def placeholder(word: str, env: dict[str, Any]) -> str:
    """`word` with its `$VARIABLES` replaced: a literal value the step's or job's `env:`
    gives, else a placeholder (what an expression or the runner would supply)."""

    def value(match: re.Match[str]) -> str:
        given = env.get(match[1])
        if isinstance(given, str) and "${{" not in given:
            return given
        return f"placeholder-{match[1].lower()}"

    return VARIABLE.sub(value, word)


def parse_phi(argv: list[str]) -> argparse.Namespace:
    """`phi ARGV` as `phi` itself parses it (finetune_phi.cli.main.main: unknown arguments are
    an error but for the commands that pass them to TRL); fails the test on a parse error."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            args, extra = build_parser().parse_known_args(argv)
    except SystemExit:
        raise AssertionError(f"phi {shlex.join(argv)}: {errors.getvalue().strip()}") from None
    assert not extra or args.passthrough, f"phi {shlex.join(argv)}: unrecognized {extra}"
    assert args.handler.__name__ != "<lambda>", f"phi {shlex.join(argv)}: no command, only help"
    return args


def phi_commands(job: dict[str, Any], step: dict[str, Any]) -> list[argparse.Namespace]:
    """Every `phi` command the step runs, parsed."""
    env = {**job.get("env", {}), **step.get("env", {})}
    found = []
    for words in simple_commands(step.get("run", "")):
        while words and re.fullmatch(r"\w+=.*", words[0]):  # VARIABLE=value phi ...
            words = words[1:]
        if words and Path(words[0]).name == "phi":
            found.append(parse_phi([placeholder(word, env) for word in words[1:]]))
    return found


def phi_steps() -> Iterator[tuple[str, str, dict[str, Any], int, list[argparse.Namespace]]]:
    """(file, job name, job, step index, its phi commands) of every step that runs phi."""
    for file, name, job in jobs():
        for index, step in enumerate(job.get("steps", [])):
            commands = phi_commands(job, step)
            if commands:
                yield file, name, job, index, commands


def is_gate(args: argparse.Namespace) -> bool:
    """`phi eval --safety` that runs (a dry run checks and sends nothing)."""
    return args.handler is eval_command.run and args.safety and not args.dry_run


def is_managed_deploy(args: argparse.Namespace) -> bool:
    """`phi deploy` that moves the managed endpoint's traffic."""
    return (
        args.handler is deploy_command.run
        and not args.serverless
        and not args.dry_run
        and not args.delete
    )


def is_download(args: argparse.Namespace) -> bool:
    return args.handler is finetune_command.run_download and not args.dry_run


def test_every_phi_command_in_a_workflow_parses_with_phis_own_parser() -> None:
    """A renamed or removed option, or a command that no longer exists, fails here, not in a
    workflow run that has already spent an hour evaluating."""
    assert list(simple_commands('a "$X" >> "$OUT" && b \\\n  --c d | e')) == [
        ["a", "$X"],
        ["b", "--c", "d"],
        ["e"],
    ]
    handlers = set()
    for _file, _name, _job, _index, commands in phi_steps():
        handlers |= {f"{a.handler.__module__}.{a.handler.__name__}" for a in commands}
    assert {
        "finetune_phi.cli.doctor.run",
        "finetune_phi.cli.cost.run",
        "finetune_phi.cli.data.run_prepare",
        "finetune_phi.cli.finetune.run_download",
        "finetune_phi.cli.eval.run",
        "finetune_phi.cli.deploy.run",
    } <= handlers, handlers


def test_inputs_and_expressions_reach_run_steps_only_through_env() -> None:
    """An expression inside `run:` is pasted into the script before bash reads it (template
    injection); a value in `env:` is data."""
    for file, name, job in jobs():
        for step in job.get("steps", []):
            assert "${{" not in step.get("run", ""), (file, name, step.get("name"))


def test_no_workflow_accepts_a_safety_risk() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        assert "accept-safety-risk" not in path.read_text(), path.name
    for file, name, _job, _index, commands in phi_steps():
        for args in commands:
            if args.handler is deploy_command.run:
                assert args.accept_safety_risk is None, (file, name)


def test_every_deploy_follows_a_safety_gate_on_the_jobs_model_and_stops_when_it_fails() -> None:
    """In its job, before any `phi deploy` that moves traffic: a step runs `phi eval --safety`
    on the model `phi finetune download` brought of that same job, writing the report deploy
    reads; the gate's failure (exit 1) fails the job there, and deploy then never runs."""
    deploys = 0
    for file, name, job in jobs():
        earlier: list[tuple[dict[str, Any], argparse.Namespace]] = []
        for step in job.get("steps", []):
            commands = phi_commands(job, step)
            for args in filter(is_managed_deploy, commands):
                deploys += 1
                where = (file, name, step.get("name"))
                gates = [(s, a) for s, a in earlier if is_gate(a)]
                assert gates, f"{where}: no `phi eval --safety` step before deploy"
                gate_step, gate = gates[-1]
                assert Path(gate.out) / "report.json" == Path(args.eval_report), where
                assert not args.no_verify, f"{where}: the parity check runs before traffic moves"
                assert args.verify_model is not None, where
                assert Path(gate.candidate) == Path(args.verify_model), where
                downloads = [a for _, a in earlier if is_download(a)]
                assert any(
                    d.job == args.job and Path(d.output) == Path(args.verify_model)
                    for d in downloads
                ), f"{where}: the gate evaluates the model of the job deploy deploys"
                # A failed gate must stop the job: nothing lets the run go on past it.
                assert not gate_step.get("continue-on-error"), where
                assert not job.get("continue-on-error"), where
                assert "if" not in step, f"{where}: deploy runs only when every step before passed"
            earlier.extend((step, args) for args in commands)
    assert deploys, "a workflow deploys a model (model-deploy.yml)"


def test_model_deploys_run_by_hand_per_stack_behind_its_environment() -> None:
    workflow = load("model-deploy.yml")
    assert list(workflow["on"]) == ["workflow_dispatch"], "a person decides when a model goes live"
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert inputs["stack"]["type"] == "choice"
    assert sorted(inputs["stack"]["options"]) == STACKS
    assert inputs["job"]["required"] is True
    assert "default" not in inputs["job"], "no job is deployed by default"
    assert inputs["base"]["default"] == DEFAULT_MODEL, "the custom path's base model"
    (job,) = workflow["jobs"].values()
    # The stack's deploying environment: main only; prod's reviewers approve each model.
    assert job["environment"] == "${{ inputs.stack }}"
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    assert job["env"] == {
        "STACK": "${{ inputs.stack }}",
        "JOB": "${{ inputs.job }}",
        "BASE": "${{ inputs.base }}",
    }
    # One rollout per stack at a time, never cancelled halfway, in a queue of its own:
    # concurrency groups are shared by every workflow, and a pending run of a group replaces
    # an older pending one, so sharing a Pulumi queue could drop a pending `pulumi up`.
    assert job["concurrency"] == {
        "group": "model-deploy-${{ inputs.stack }}",
        "cancel-in-progress": False,
    }
    others = [
        other["concurrency"]["group"]
        for file, _name, other in jobs()
        if file != "model-deploy.yml" and "concurrency" in other
    ]
    assert others
    assert not [group for group in others if group.startswith("model-deploy-")]


def test_the_model_deploy_reads_the_outputs_once_and_signs_in_before_each_azure_step() -> None:
    workflow = load("model-deploy.yml")
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    # The outputs, from the stack the other workflows name, with the CLI the action installs.
    (read,) = [i for i, s in enumerate(steps) if "pulumi stack output" in s.get("run", "")]
    assert steps[read]["run"] == (
        'pulumi stack output --json --stack "$PULUMI_ORG/finetune-phi/$STACK" > outputs.json'
    )
    assert steps[read]["env"] == {"PULUMI_ORG": "${{ vars.PULUMI_ORG }}"}
    assert uses.index("pulumi/auth-actions") < uses.index(PULUMI_ACTION) < read
    assert not pulumi_commands(job), "the action only installs the CLI here"
    talks_to_azure = 0
    held_out = None
    for index, step in enumerate(steps):
        for args in phi_commands(job, step):
            assert args.stack is None, "every phi command reads the outputs read once"
            if args.outputs is not None:
                assert index > read, step.get("name")
                assert Path(args.outputs) == Path("outputs.json")
            if args.handler is data_command.run_prepare:
                held_out = Path(args.out) / "eval_data.jsonl"
            if args.handler is eval_command.run:
                assert Path(args.data or eval_command.DEFAULT_DATA) == held_out
            if is_download(args) or is_gate(args) or is_managed_deploy(args):
                # The GitHub token behind a sign-in lasts minutes, and the Azure CLI cannot
                # renew it: each step that talks to Azure signs in just before it.
                talks_to_azure += 1
                assert uses[index - 1] == "azure/login", step.get("name")
            if is_managed_deploy(args):
                assert Path(args.verify_data) == held_out
    assert talks_to_azure == 3
    # Passed or failed, the report comes back; only a cancelled run skips it.
    (upload,) = steps_using(job, "actions/upload-artifact")
    assert upload["if"] == "${{ !cancelled() }}"
    assert upload["with"]["path"] == "eval/"
