"""`phi cleanup`: purge what Azure soft-deletes, around `pulumi destroy`.

Azure is the ARM stand-in (tests/arm_server.py): both clients of a purge, azure-ai-ml's
MLClient and ArmClient, send to `https://management.azure.com` on a session that delivers
there to the stand-in and refuses every other address; the sign-in is a fake credential.

The prerequisites are checked as a user meets them: `phi` in a subprocess with a clean
environment (no Azure sign-in, managed identity asked at a loopback stand-in, never Azure's),
a fake `pulumi` on PATH or none, a terminal (a pty) or none, and every HTTPS request sent
through a loopback proxy that records it and lets nothing through: a refusal "before its
first request" is a proxy that recorded nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.credentials import AccessToken

from finetune_phi.cli.main import main as phi
from finetune_phi.cloud.cleanup import CleanupError, Clients, cleanup, plan
from tests.arm_server import ArmState, arm_server, arm_session
from tests.support import (
    BIN,
    PHI,
    ROOT,
    assert_one_sign_in_line,
    http_server,
    raw_server,
    read_request,
    without_azure_sign_in,
)

OUTPUTS = {
    "subscriptionId": "00000000-0000-0000-0000-0000000000a1",
    "resourceGroupName": "rg-phi-dev",
    "location": "eastus2",
    "workspaceName": "mlw-phi-dev",
    "logAnalyticsName": "log-phi-dev",
    "keyVaultName": "kv-phidev-abc123",
}
WORKSPACES = "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg-phi-dev/providers/Microsoft.MachineLearningServices/workspaces"
WORKSPACE = f"{WORKSPACES}/mlw-phi-dev"
ML = "api-version=2024-10-01-preview"  # what azure-ai-ml 1.35 sends for workspaces
LOGS = "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg-phi-dev/providers/Microsoft.OperationalInsights/workspaces/log-phi-dev"
VAULT_PURGE = "/subscriptions/00000000-0000-0000-0000-0000000000a1/providers/Microsoft.KeyVault/locations/eastus2/deletedVaults/kv-phidev-abc123/purge"


class FakeCredential:
    """The tests' sign-in: a TokenCredential that hands out one fixed token."""

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken("test-token", int(time.time()) + 3600)


def workspace_document(name: str, kind: str) -> dict[str, object]:
    """A workspace as ARM's GET answers it, with what azure-ai-ml reads before deleting."""
    properties = {
        "friendlyName": name,
        "provisioningState": "Succeeded",
        "mlFlowTrackingUri": f"azureml://eastus2.api.azureml.ms/mlflow/v1.0{WORKSPACES}/{name}",
    }
    if kind == "Project":
        properties["hubResourceId"] = f"{WORKSPACES}/hub-phi-dev"
    return {
        "id": f"{WORKSPACES}/{name}",
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces",
        "location": "eastus2",
        "kind": kind,
        "properties": properties,
    }


@contextmanager
def azure(outputs: Mapping[str, str] = OUTPUTS) -> Iterator[tuple[Clients, ArmState]]:
    """The stand-in, holding the stack's workspaces, and the clients a purge goes through,
    signed in with a fake token; when the block ends, nothing has left the stand-in."""
    with arm_server() as (endpoint, state):
        for key, kind in (
            ("workspaceName", "Default"),
            ("foundryHubName", "Hub"),
            ("foundryProjectName", "Project"),
        ):
            if key in outputs:
                name = outputs[key]
                state.documents[f"{WORKSPACES}/{name}"] = workspace_document(name, kind)
        session = arm_session(endpoint, state)
        yield (
            Clients.signed_in(
                FakeCredential(),
                OUTPUTS["subscriptionId"],
                OUTPUTS["resourceGroupName"],
                session=session,
                poll_seconds=0.01,
            ),
            state,
        )
        assert state.refused == []


def test_purge_runs_in_the_only_order_that_works() -> None:
    events: list[str] = []
    with azure() as (clients, state):
        cleanup(
            OUTPUTS,
            purge=True,
            destroy=lambda: events.append(f"destroy after {len(state.resource_calls())} calls"),
            clients=clients,
            log=events.append,
        )
        calls = state.resource_calls()
        polls = [c for c in state.calls if c.path.startswith("/operations/")]
        tokens = {c.authorization for c in state.calls}
    assert calls == [
        ("GET", f"{WORKSPACE}?{ML}"),  # azure-ai-ml reads the workspace first
        ("DELETE", f"{WORKSPACE}?{ML}&forceToPurge=true"),
        ("DELETE", f"{LOGS}?api-version=2023-09-01&force=true"),
        ("POST", f"{VAULT_PURGE}?api-version=2023-07-01"),
    ]
    # The two deletes finished (their operations were polled to the end) before destroy.
    assert "destroy after 3 calls" in events
    assert len(polls) == 6
    assert tokens == {"Bearer test-token"}


def test_resources_already_gone_are_not_an_error() -> None:
    with azure() as (clients, state):
        state.missing.update({WORKSPACE, LOGS})
        log: list[str] = []
        cleanup(OUTPUTS, purge=True, destroy=lambda: None, clients=clients, log=log.append)
    assert "delete ML workspace mlw-phi-dev permanently: already gone" in log
    assert "delete Log Analytics workspace log-phi-dev permanently: already gone" in log


def test_a_vault_that_cannot_be_purged_says_what_to_do() -> None:
    destroyed = []
    with azure() as (clients, state):
        state.failing[VAULT_PURGE] = (409, "Conflict")
        with pytest.raises(CleanupError) as caught:
            cleanup(OUTPUTS, purge=True, destroy=lambda: destroyed.append(True), clients=clients)
    assert destroyed == [True]
    message = str(caught.value)
    assert "HTTP 409" in message
    assert "set keyVaultName to a new name" in message


def test_a_failed_purge_before_destroy_stops_before_destroying() -> None:
    destroyed = []
    with azure() as (clients, state):
        state.failing[WORKSPACE] = (403, "AuthorizationFailed")
        with pytest.raises(CleanupError) as caught:
            cleanup(OUTPUTS, purge=True, destroy=lambda: destroyed.append(True), clients=clients)
    assert destroyed == []
    assert str(caught.value) == (
        "delete ML workspace mlw-phi-dev permanently: HTTP 403: AuthorizationFailed: "
        "AuthorizationFailed for test; nothing was destroyed: run the same command again once "
        'that is fixed (what is done already reports "already gone")'
    )


def test_a_workspace_delete_that_does_not_finish_stops_at_its_deadline() -> None:
    destroyed = []
    with azure() as (clients, state):
        state.polls_before_done = 40  # about 0.4 s of polls, against a deadline of 0.1 s
        clients.arm.timeout_seconds = 0.1
        with pytest.raises(CleanupError) as caught:
            cleanup(OUTPUTS, purge=True, destroy=lambda: destroyed.append(True), clients=clients)
        # The SDK's poller (a daemon thread) polls on: let it end here, not at a later stand-in.
        give_up = time.monotonic() + 30
        while len(state.calls) < 2 + 41 and time.monotonic() < give_up:
            time.sleep(0.01)
    assert destroyed == []
    assert str(caught.value).startswith(
        "delete ML workspace mlw-phi-dev permanently: not finished after 0.1 s; "
        "nothing was destroyed: run the same command again"
    )


def test_a_redirect_is_not_followed_and_the_token_stays_home() -> None:
    with azure() as (clients, state):
        state.redirects[WORKSPACE] = "https://elsewhere.example/collect"
        with pytest.raises(CleanupError, match="HTTP 302"):
            cleanup(OUTPUTS, purge=True, destroy=lambda: None, clients=clients)
        assert state.refused == []  # not even tried


def test_without_purge_only_destroy_runs() -> None:
    destroyed = []
    cleanup(
        OUTPUTS,
        purge=False,
        destroy=lambda: destroyed.append(True),
        clients=None,
        log=lambda _: None,
    )
    assert destroyed == [True]


def test_plan_needs_a_finetune_phi_stack() -> None:
    with pytest.raises(CleanupError, match="lack keyVaultName"):
        plan({k: v for k, v in OUTPUTS.items() if k != "keyVaultName"})


def test_dry_run_prints_the_plan_without_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(OUTPUTS))
    assert (
        phi(["cleanup", "--stack", "dev", "--outputs", str(outputs), "--purge", "--dry-run"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"GET https://management.azure.com{WORKSPACE}?{ML}"
        "    # azure-ai-ml reads mlw-phi-dev first",
        f"DELETE https://management.azure.com{WORKSPACE}?{ML}&forceToPurge=true"
        "    # delete ML workspace mlw-phi-dev permanently",
        f"DELETE https://management.azure.com{LOGS}?api-version=2023-09-01&force=true"
        "    # delete Log Analytics workspace log-phi-dev permanently",
        "pulumi destroy --stack dev --yes --skip-preview",
        f"POST https://management.azure.com{VAULT_PURGE}?api-version=2023-07-01"
        "    # purge soft-deleted key vault kv-phidev-abc123",
    ]


def test_only_a_confirmed_purge_signs_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pulumi = FakePulumi.on_path(tmp_path, monkeypatch)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(OUTPUTS))
    command = ["cleanup", "--stack", "dev", "--outputs", str(outputs), "--purge"]
    destroyed: list[list[str]] = []
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", FakeCredential)
    monkeypatch.setattr("finetune_phi.cloud.cleanup._run", destroyed.append)
    with azure() as (clients, state):
        signed_in: list[tuple[object, ...]] = []

        def sign_in(*args: object) -> Clients:
            signed_in.append(args)
            return clients

        monkeypatch.setattr(Clients, "signed_in", sign_in)
        assert phi([*command, "--dry-run"]) == 0
        assert signed_in == []
        assert state.calls == []
        assert phi([*command, "--yes"]) == 0
        sent = state.resource_calls()
    [(credential, subscription, group)] = signed_in
    assert isinstance(credential, FakeCredential)
    assert (subscription, group) == (OUTPUTS["subscriptionId"], OUTPUTS["resourceGroupName"])
    assert destroyed == [["pulumi", "destroy", "--stack", "dev", "--yes", "--skip-preview"]]
    assert [method for method, _ in sent] == ["GET", "DELETE", "DELETE", "POST"]
    assert pulumi.calls() == []  # the destroy went to `_run`, and the outputs came from the file


def test_unreadable_outputs_are_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        phi(["cleanup", "--stack", "dev", "--outputs", str(tmp_path / "nope.json"), "--dry-run"])
        == 2
    )
    assert "nope.json" in capsys.readouterr().err


def test_a_foundry_stack_purges_the_project_then_the_hub() -> None:
    outputs = {**OUTPUTS, "foundryHubName": "hub-phi-dev", "foundryProjectName": "proj-phi-dev"}
    with azure(outputs) as (clients, state):
        cleanup(outputs, purge=True, destroy=lambda: None, clients=clients, log=lambda _: None)
        deletes = [call for call in state.resource_calls() if call[0] != "GET"]
    assert deletes[:3] == [
        ("DELETE", f"{WORKSPACES}/proj-phi-dev?{ML}&forceToPurge=true"),
        ("DELETE", f"{WORKSPACES}/hub-phi-dev?{ML}&forceToPurge=true"),
        ("DELETE", f"{WORKSPACE}?{ML}&forceToPurge=true"),
    ]
    assert len(deletes) == 5


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"workspaceName": "../../.."}, "workspaceName = '../../..'"),
        ({"subscriptionId": "sub/../x"}, "subscriptionId = 'sub/../x': must be a GUID"),
        ({"keyVaultName": "kv?x=1"}, "keyVaultName = 'kv?x=1'"),
        ({"location": "east us"}, "location = 'east us'"),
        ({"foundryHubName": "hub/../../.."}, "foundryHubName = 'hub/../../..'"),
    ],
)
def test_outputs_that_break_azures_naming_rules_send_nothing(
    changed: dict[str, str], named: str
) -> None:
    with azure() as (clients, state):
        with pytest.raises(CleanupError) as caught:
            cleanup({**OUTPUTS, **changed}, purge=True, destroy=lambda: None, clients=clients)
        assert state.calls == []
    assert named in str(caught.value)
    assert "nothing was sent" in str(caught.value)


def test_the_dry_run_prints_exactly_the_paths_that_are_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = {**OUTPUTS, "foundryHubName": "hub-phi-dev", "foundryProjectName": "proj-phi-dev"}
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    assert (
        phi(
            [
                "cleanup",
                "--stack",
                "dev",
                "--outputs",
                str(tmp_path / "outputs.json"),
                "--purge",
                "--dry-run",
            ]
        )
        == 0
    )
    printed = [
        (line.split()[0], line.split()[1].removeprefix("https://management.azure.com"))
        for line in capsys.readouterr().out.splitlines()
        if line.startswith(("GET", "DELETE", "POST"))
    ]
    with azure(outputs) as (clients, state):
        cleanup(outputs, purge=True, destroy=lambda: None, clients=clients, log=lambda _: None)
        sent = state.resource_calls()
    assert printed == sent


def test_the_old_spelling_still_works_and_names_the_new_one(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(OUTPUTS))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.cleanup",
            "--stack",
            "dev",
            "--dry-run",
            "--outputs",
            str(outputs),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "is now `phi cleanup`" in result.stderr
    assert result.stdout.strip() == "pulumi destroy --stack dev --yes --skip-preview"


# --- The prerequisites, and a rerun after a failure, as a user meets them -----------------

TOKEN = "signed-in-token-never-printed"
CLI_MISSING = "phi: error: the Pulumi CLI is not on PATH"
PLAN_WITHOUT_CLI = (
    "`pulumi stack output --json --stack dev > outputs.json`, then run "
    "`phi cleanup --stack dev --outputs outputs.json --purge --dry-run`"
)
DESTROY = "destroy --stack dev --yes --skip-preview"
"""The fake CLI's record of `pulumi destroy`."""


@dataclass(frozen=True)
class FakePulumi:
    """A `pulumi` that records each command line it is given, prints the stack's outputs for
    `pulumi stack output` until a destroy has run (then `{}`, as a destroyed stack does),
    and fails the next destroy when its `fail-destroy` file exists."""

    folder: Path

    @classmethod
    def make(cls, tmp_path: Path) -> FakePulumi:
        folder = tmp_path / "fake-pulumi"
        folder.mkdir()
        (folder / "stack-outputs.json").write_text(json.dumps(OUTPUTS))
        script = folder / "pulumi"
        script.write_text(
            f"""#!/bin/sh
here='{folder}'
printf '%s\\n' "$*" >> "$here/pulumi.log"
case "$1" in
stack) if [ -e "$here/destroyed" ]; then echo '{{}}'; else cat "$here/stack-outputs.json"; fi ;;
destroy)
    if [ -e "$here/fail-destroy" ]; then
        rm "$here/fail-destroy"; echo 'error: the fake destroy failed' >&2; exit 255
    fi
    touch "$here/destroyed"; echo 'Resources: 0 changes' ;;
esac
"""
        )
        script.chmod(0o755)
        return cls(folder)

    @classmethod
    def on_path(cls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
        pulumi = cls.make(tmp_path)
        monkeypatch.setenv("PATH", f"{pulumi.folder}{os.pathsep}{os.environ['PATH']}")
        return pulumi

    def calls(self) -> list[str]:
        log = self.folder / "pulumi.log"
        return log.read_text().splitlines() if log.exists() else []


@contextmanager
def recording_proxy() -> Iterator[tuple[str, list[str]]]:
    """An HTTPS proxy on loopback that records each request line (`CONNECT host:443`) and
    refuses it: nothing sent through it reaches anywhere."""
    seen: list[str] = []

    def refuse(connection: socket.socket) -> None:
        request = read_request(connection)
        seen.append(request.split(b"\r\n", 1)[0].decode(errors="replace"))
        connection.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        connection.close()

    with raw_server(refuse) as url:
        yield url.removesuffix("/score"), seen


@contextmanager
def signed_in_identity() -> Iterator[tuple[str, list[str]]]:
    """App Service's managed-identity endpoint with an identity: it answers every token
    request (recorded by the resource it names) with `TOKEN`."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            resource = parse_qs(urlsplit(self.path).query).get("resource", [""])[0]
            asked.append(resource)
            body = json.dumps(
                {
                    "access_token": TOKEN,
                    "expires_on": str(int(time.time()) + 3600),
                    "resource": resource,
                    "token_type": "Bearer",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with http_server(Handler) as url:
        yield url, asked


@dataclass
class User:
    """Someone running `phi cleanup` in a Pulumi project folder with a clean environment:
    `identity` answers managed-identity token requests, `proxy` takes every HTTPS request,
    and `pulumi` is on PATH when given."""

    project: Path
    env: dict[str, str]

    @classmethod
    def at(
        cls, tmp_path: Path, identity: str, proxy: str, pulumi: FakePulumi | None = None
    ) -> User:
        home, project = tmp_path / "home", tmp_path / "project"
        home.mkdir()
        project.mkdir()
        (project / "Pulumi.yaml").write_text("name: finetune-phi\nruntime: python\n")
        (project / "outputs.json").write_text(json.dumps(OUTPUTS))
        env = without_azure_sign_in(home, identity)
        if pulumi is not None:
            env["PATH"] = f"{pulumi.folder}{os.pathsep}{env['PATH']}"
        env.update(HTTPS_PROXY=proxy, HTTP_PROXY=proxy, NO_PROXY="127.0.0.1,localhost")
        return cls(project, env)

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.project)) for p in self.project.rglob("*"))

    def phi(
        self, *args: str, stdin: int | None = subprocess.DEVNULL
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PHI, "cleanup", *args],
            cwd=self.project,
            env=self.env,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    @contextmanager
    def at_a_terminal(self, *args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
        """`phi cleanup ARGS` with a terminal (a pty) for its stdin: the process, and the
        pty's other end to type on."""
        typist, terminal = pty.openpty()
        try:
            process = subprocess.Popen(
                [*PHI, "cleanup", *args],
                cwd=self.project,
                env=self.env,
                stdin=terminal,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            os.close(terminal)
            try:
                yield process, typist
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        finally:
            os.close(typist)

    def answering(self, answer: str, *args: str) -> subprocess.CompletedProcess[str]:
        with self.at_a_terminal(*args) as (process, typist):
            os.write(typist, answer.encode())
            out, err = process.communicate(timeout=120)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[str]]]:
    with recording_proxy() as found:
        yield found


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one stderr line of a run that exited `code`."""
    assert result.returncode == code, result.stderr
    [line] = result.stderr.splitlines()
    return line


@pytest.mark.parametrize("purge", [["--purge"], []], ids=["purge", "destroy-only"])
def test_a_dry_run_from_saved_outputs_needs_no_cli_and_no_sign_in(
    tmp_path: Path, no_managed_identity: str, proxy: tuple[str, list[str]], purge: list[str]
) -> None:
    user = User.at(tmp_path, no_managed_identity, proxy[0])
    before = user.files()
    result = subprocess.run(
        [
            str(BIN / "phi"),
            "cleanup",
            "--stack",
            "dev",
            "--outputs",
            "outputs.json",
            *purge,
            "--dry-run",
        ],
        cwd=user.project,
        env=user.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert "pulumi destroy --stack dev --yes --skip-preview" in lines
    assert len(lines) == (5 if purge else 1)
    assert proxy[1] == []
    assert user.files() == before


@pytest.mark.parametrize(
    "args",
    [[], ["--dry-run"], ["--purge", "--yes"], ["--outputs", "outputs.json", "--purge", "--yes"]],
    ids=["asks", "dry-run", "purge", "purge-from-outputs"],
)
def test_without_the_cli_one_line_says_how_to_get_a_plan_and_nothing_is_sent(
    tmp_path: Path, args: list[str], proxy: tuple[str, list[str]]
) -> None:
    with signed_in_identity() as (identity, asked):
        user = User.at(tmp_path, identity, proxy[0])
        before = user.files()
        result = user.phi("--stack", "dev", *args)
    line = one_line(result, 2)
    assert line.startswith(CLI_MISSING)
    assert PLAN_WITHOUT_CLI in line
    assert result.stdout == ""
    assert proxy[1] == []
    assert asked == []  # not even a token
    assert user.files() == before


def test_a_confirmed_purge_without_credentials_sends_nothing(
    tmp_path: Path, no_managed_identity: str, proxy: tuple[str, list[str]]
) -> None:
    pulumi = FakePulumi.make(tmp_path)
    user = User.at(tmp_path, no_managed_identity, proxy[0], pulumi)
    before = user.files()
    result = user.phi("--stack", "dev", "--purge", "--yes")
    assert_one_sign_in_line(result)
    assert proxy[1] == []
    assert pulumi.calls() == ["stack output --json --stack dev"]  # no destroy
    assert user.files() == before  # no outputs kept either


def test_outside_a_pulumi_project_nothing_is_sent(
    tmp_path: Path, no_managed_identity: str, proxy: tuple[str, list[str]]
) -> None:
    pulumi = FakePulumi.make(tmp_path)
    user = User.at(tmp_path, no_managed_identity, proxy[0], pulumi)
    (user.project / "Pulumi.yaml").unlink()
    line = one_line(user.phi("--stack", "dev", "--purge", "--yes"), 2)
    assert line.startswith("phi: error: no Pulumi.yaml in ")
    assert proxy[1] == []
    assert DESTROY not in pulumi.calls()


def test_without_a_terminal_it_asks_for_yes_and_sends_nothing(
    tmp_path: Path, no_managed_identity: str, proxy: tuple[str, list[str]]
) -> None:
    pulumi = FakePulumi.make(tmp_path)
    user = User.at(tmp_path, no_managed_identity, proxy[0], pulumi)
    before = user.files()
    result = user.phi("--stack", "dev", "--purge")  # stdin: /dev/null, as in CI
    line = one_line(result, 2)
    assert line == "phi: error: no terminal to confirm on; pass --yes; nothing was sent"
    assert proxy[1] == []
    assert DESTROY not in pulumi.calls()
    assert user.files() == before


@pytest.mark.parametrize(
    ("answer", "confirmed"),
    [
        *((yes, True) for yes in ("y\n", "Y\n", "yes\n", "YES\n", " Yes \n")),
        *((other, False) for other in ("n\n", "\n", "no\n", "yess\n", "y es\n", "\x04")),
    ],
)
def test_y_and_yes_in_any_case_confirm_and_anything_else_does_nothing(
    tmp_path: Path,
    no_managed_identity: str,
    proxy: tuple[str, list[str]],
    answer: str,
    confirmed: bool,
) -> None:
    pulumi = FakePulumi.make(tmp_path)
    user = User.at(tmp_path, no_managed_identity, proxy[0], pulumi)
    result = user.answering(answer, "--stack", "dev")
    assert result.returncode == (0 if confirmed else 1), result.stderr
    assert result.stderr == ""
    # The answer is echoed on the terminal, not into stdout (a pipe here).
    assert result.stdout.startswith("Destroy stack dev and everything in it? [y/N] ")
    last = "\npulumi destroy --stack dev: done\n" if confirmed else "nothing done\n"
    assert result.stdout.endswith(last)
    assert pulumi.calls() == ([DESTROY] if confirmed else [])


def test_ctrl_c_at_the_prompt_is_phis_one_line(
    tmp_path: Path, no_managed_identity: str, proxy: tuple[str, list[str]]
) -> None:
    pulumi = FakePulumi.make(tmp_path)
    user = User.at(tmp_path, no_managed_identity, proxy[0], pulumi)
    with user.at_a_terminal("--stack", "dev") as (process, _):
        assert process.stdout is not None
        shown = b""
        give_up = time.monotonic() + 60
        while not shown.endswith(b"[y/N] ") and time.monotonic() < give_up:
            ready, _, _ = select.select([process.stdout], [], [], 1)
            if ready:
                shown += os.read(process.stdout.fileno(), 1024)
        assert shown.endswith(b"[y/N] ")
        # A signal that lands between the prompt and the read is acted on only at the next
        # keystroke (CPython checks for signals between its own steps): press Ctrl-C again
        # until it is acted on, as a user would.
        for _ in range(30):
            process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
                break
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    [line] = err.splitlines()
    assert line.startswith("phi: interrupted (Ctrl-C)")
    assert pulumi.calls() == []


def test_signed_in_it_takes_a_token_first_and_a_lost_network_is_one_line(
    tmp_path: Path, proxy: tuple[str, list[str]]
) -> None:
    pulumi = FakePulumi.make(tmp_path)
    with signed_in_identity() as (identity, asked):
        user = User.at(tmp_path, identity, proxy[0], pulumi)
        result = user.answering("YES\n", "--stack", "dev", "--outputs", "outputs.json", "--purge")
    assert asked
    assert set(asked) == {"https://management.azure.com"}
    # The first request went out (the proxy refused it) only after the token and the "YES".
    assert proxy[1]
    assert all(seen.startswith("CONNECT management.azure.com:443 ") for seen in proxy[1])
    line = one_line(result, 1)
    assert line.startswith(
        "phi: error: delete ML workspace mlw-phi-dev permanently: cannot reach Azure"
    )
    assert "nothing was destroyed" in line
    assert TOKEN not in result.stdout + result.stderr
    assert pulumi.calls() == []


# In-process, on the ARM stand-in: what each step reports, and a rerun after a failure.


@pytest.fixture
def confirmed_cleanup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ArmState, FakePulumi, Path]]:
    """`phi cleanup --stack dev --purge --yes` as it runs in a project folder, with the fake
    CLI on PATH and the clients on the stand-in: its state, the CLI, and the state folder."""
    pulumi = FakePulumi.on_path(tmp_path, monkeypatch)
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: finetune-phi\n")
    monkeypatch.chdir(project)
    monkeypatch.setenv("PHI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", FakeCredential)
    with azure() as (clients, state):
        monkeypatch.setattr(Clients, "signed_in", lambda *args: clients)
        yield state, pulumi, tmp_path / "state"


CONFIRMED = ["cleanup", "--stack", "dev", "--purge", "--yes"]
WORKSPACE_DONE = "delete ML workspace mlw-phi-dev permanently: done"
LOGS_DONE = "delete Log Analytics workspace log-phi-dev permanently: done"
VAULT_DONE = "purge soft-deleted key vault kv-phidev-abc123: done"


def test_each_step_says_what_it_did_and_a_rerun_finishes_the_job(
    confirmed_cleanup: tuple[ArmState, FakePulumi, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    state, pulumi, kept = confirmed_cleanup
    state.failing[LOGS] = (500, "InternalServerError")
    assert phi(CONFIRMED) == 1
    out, err = capfd.readouterr()
    assert out.splitlines() == [WORKSPACE_DONE]
    [line] = err.splitlines()
    assert line.startswith(
        "phi: error: delete Log Analytics workspace log-phi-dev permanently: HTTP 500: "
        "InternalServerError"
    )
    assert "nothing was destroyed (1 of its 2 purges are done)" in line
    assert "run the same command again" in line
    assert DESTROY not in pulumi.calls()
    assert (kept / "cleanup-dev.json").is_file()

    del state.failing[LOGS]
    state.missing.add(WORKSPACE)  # purged by the first run
    assert phi(CONFIRMED) == 0
    out, err = capfd.readouterr()
    assert err == ""
    assert [line for line in out.splitlines() if line != "Resources: 0 changes"] == [
        "delete ML workspace mlw-phi-dev permanently: already gone",
        LOGS_DONE,
        "pulumi destroy --stack dev: running",
        "pulumi destroy --stack dev: done",
        VAULT_DONE,
    ]
    assert pulumi.calls()[-1] == DESTROY
    assert not kept.exists()  # nothing left behind


def test_a_rerun_after_destroy_purges_with_the_outputs_it_kept(
    confirmed_cleanup: tuple[ArmState, FakePulumi, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    state, pulumi, kept = confirmed_cleanup
    state.failing[VAULT_PURGE] = (503, "ServiceUnavailable")
    assert phi(CONFIRMED) == 1
    out, err = capfd.readouterr()
    assert out.splitlines()[-1] == "pulumi destroy --stack dev: done"
    [line] = err.splitlines()
    assert "HTTP 503" in line
    assert "everything else is gone" in line
    assert pulumi.calls() == ["stack output --json --stack dev", DESTROY]

    # The stack is destroyed now: its outputs are `{}`, and the kept ones name the vault.
    del state.failing[VAULT_PURGE]
    state.missing.update({WORKSPACE, LOGS})
    assert phi(CONFIRMED) == 0
    out, err = capfd.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == (
        "stack dev has no outputs left: using those the last cleanup kept, "
        f"{kept / 'cleanup-dev.json'}"
    )
    assert "delete ML workspace mlw-phi-dev permanently: already gone" in lines
    assert "delete Log Analytics workspace log-phi-dev permanently: already gone" in lines
    assert lines[-1] == VAULT_DONE
    assert pulumi.calls()[-1] == DESTROY  # destroying a destroyed stack is fine
    assert not kept.exists()


def test_a_failed_destroy_says_how_far_it_got_and_a_rerun_finishes(
    confirmed_cleanup: tuple[ArmState, FakePulumi, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    state, pulumi, kept = confirmed_cleanup
    (pulumi.folder / "fail-destroy").touch()
    assert phi(CONFIRMED) == 1
    err = capfd.readouterr().err
    assert "error: the fake destroy failed" in err  # Pulumi's own output, then phi's line
    assert err.splitlines()[-1] == (
        "phi: error: pulumi destroy --stack dev failed with exit code 255 (Pulumi's output is "
        "above) (the 2 purges before it are done): run the same command again once that is "
        'fixed (what is done already reports "already gone")'
    )
    assert ("POST", f"{VAULT_PURGE}?api-version=2023-07-01") not in state.resource_calls()
    state.missing.update({WORKSPACE, LOGS})
    assert phi(CONFIRMED) == 0
    assert capfd.readouterr().out.splitlines()[-1] == VAULT_DONE
    assert not kept.exists()


def test_a_destroyed_stack_without_kept_outputs_asks_for_them(
    confirmed_cleanup: tuple[ArmState, FakePulumi, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    state, pulumi, _ = confirmed_cleanup
    (pulumi.folder / "destroyed").touch()  # `pulumi stack output --json` prints {}
    assert phi(CONFIRMED) == 2
    [line] = capfd.readouterr().err.splitlines()
    assert line.startswith("phi: error: stack dev has no outputs: destroyed already?")
    assert "--outputs FILE" in line
    assert state.calls == []
    assert DESTROY not in pulumi.calls()


def test_the_old_spelling_exits_with_phis_code_and_line(
    tmp_path: Path, no_managed_identity: str, proxy: tuple[str, list[str]]
) -> None:
    user = User.at(tmp_path, no_managed_identity, proxy[0])  # no Pulumi CLI
    result = subprocess.run(
        [sys.executable, "-m", "infra.cleanup", "--stack", "dev", "--purge", "--yes"],
        cwd=ROOT,
        env={**user.env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    note, error = result.stderr.splitlines()
    assert "`python -m infra.cleanup` is now `phi cleanup`" in note
    assert error.startswith(CLI_MISSING)
    assert proxy[1] == []


def test_ctrl_c_during_destroy_waits_for_pulumi_and_never_kills_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from finetune_phi.cloud import cleanup as module

    seen: list[str] = []

    class Pulumi:
        """`pulumi destroy` as Ctrl-C finds it: the first wait is interrupted; Pulumi, which
        had the same Ctrl-C, then stops on its own."""

        def __init__(self, command: list[str]) -> None:
            seen.append(" ".join(command))

        def wait(self) -> int:
            seen.append("wait")
            if seen.count("wait") == 1:
                raise KeyboardInterrupt
            return 255

        def kill(self) -> None:
            seen.append("kill")

    monkeypatch.setattr(subprocess, "Popen", Pulumi)
    with pytest.raises(KeyboardInterrupt):
        module._run(["pulumi", "destroy", "--stack", "dev"])
    assert seen == ["pulumi destroy --stack dev", "wait", "wait"]
