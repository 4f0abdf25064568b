"""The GitHub workflows (.github/workflows): valid, audited, and shaped as the docs say.

Offline: check-jsonschema's vendored GitHub workflow schema, zizmor's offline audits (the
pedantic persona), and the structure a platform team relies on, parsed from the files.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

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
            env = job["env"]
            assert env["ARM_USE_OIDC"] == "true", (file, name)
            for variable in ("CLIENT_ID", "TENANT_ID", "SUBSCRIPTION_ID"):
                assert env[f"ARM_{variable}"] == f"${{{{ vars.AZURE_{variable} }}}}"
            order = [s.get("uses", "").split("@")[0] for s in job["steps"]]
            assert order.index("pulumi/auth-actions") < order.index(PULUMI_ACTION)
            (auth,) = steps_using(job, "pulumi/auth-actions")
            # A team token: what the environment's team may do, never the whole organization.
            assert auth["with"]["requested-token-type"].endswith(":access_token:team")
            assert auth["with"]["scope"] == "team:${{ vars.PULUMI_TEAM }}"
            assert inputs["refresh"] is True
            assert inputs["policyPacks"] == "policy"
            assert inputs["pulumi-version"] == infra, "the CLI matches the locked SDK"
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
    (step,) = steps_using(job, PULUMI_ACTION)
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
        stacks_of(job, steps_using(job, PULUMI_ACTION)[0])[0]: job
        for job in up["jobs"].values()
        if steps_using(job, PULUMI_ACTION)
    }
    assert sorted(jobs_by_stack) == STACKS
    assert jobs_by_stack["dev"]["environment"] == "dev"
    assert jobs_by_stack["dev"]["needs"] == "test", "nothing deploys from a red main"
    assert jobs_by_stack["prod"]["environment"] == "prod"
    assert jobs_by_stack["prod"]["needs"] == "dev"
    for stack, job in jobs_by_stack.items():
        (step,) = steps_using(job, PULUMI_ACTION)
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
    assert names == {"ci.yml", "infra-preview.yml", "infra-up.yml", "infra-drift.yml"}
    for name in names:
        assert f"`{Path('.github/workflows') / name}`" in DELIVERY, name
