"""`phi data screen` and `phi data prepare --screen` against a loopback stand-in for Azure AI
Content Safety (tests/content_safety_server.py), signed in through a loopback managed-identity
token server: reports by FILE:LINE, throttling, resuming, refusing and dropping, dry runs,
redirects, and the token kept out of every output, file and log."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from finetune_phi.cli.main import main
from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.safety import client as safety_client
from finetune_phi.safety.client import ContentSafetyClient, endpoint_url
from finetune_phi.safety.screen import cache_path, pieces
from tests.content_safety_server import (
    API_VERSION,
    S0_RATE,
    TOKEN,
    ContentSafetyStandIn,
    TokenServer,
    content_safety,
    token_server,
)
from tests.support import PHI, ROOT, assert_one_sign_in_line, without_azure_sign_in

ROWS = [
    [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi"}],
    [{"role": "user", "content": "a grimhate remark"}, {"role": "assistant", "content": "ok"}],
    [  # the system message is not screened: only what users and the model say
        {"role": "system", "content": "brawl"},
        {"role": "user", "content": "fine"},
        {"role": "assistant", "content": "thanks"},
    ],
    [{"role": "user", "content": "selfhurt"}, {"role": "assistant", "content": "blush"}],
    [{"role": "user", "content": "what next"}, {"role": "assistant", "content": "a brawl"}],
]


def chat_file(path: Path, rows: list[list[dict[str, str]]] = ROWS) -> Path:
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in rows))
    return path


class Credential:
    """A token credential as azure-identity's, handing out the stand-in's token."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(TOKEN, int(time.time()) + 3600)


def no_token_in(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


# --- the client ---


def test_the_client_speaks_the_documented_contract(service: ContentSafetyStandIn) -> None:
    credential = Credential()
    client = ContentSafetyClient(service.base_url + "/", credential)
    assert client.analyze("one grimhate and a blush") == {
        "Hate": 4,
        "SelfHarm": 0,
        "Sexual": 2,
        "Violence": 0,
    }
    [request] = service.requests
    assert request.path == f"/contentsafety/text:analyze?api-version={API_VERSION}"
    assert request.authorization == f"Bearer {TOKEN}"
    assert request.body == {
        "text": "one grimhate and a blush",
        "categories": ["Hate", "SelfHarm", "Sexual", "Violence"],
        "outputType": "FourSeverityLevels",
    }
    assert credential.scopes == [("https://cognitiveservices.azure.com/.default",)]


def test_a_throttled_service_is_retried_after_its_retry_after(
    service: ContentSafetyStandIn,
) -> None:
    waits: list[float] = []
    client = ContentSafetyClient(service.base_url, Credential(), sleep=waits.append, rate=1000)
    service.throttle = ["2", "1"]
    assert client.analyze("selfhurt")["SelfHarm"] == 6
    assert [w for w in waits if w >= 1] == [2.0, 1.0]  # Retry-After, not a guess
    assert len(service.requests) == 3
    assert client.sent == 3


def test_a_retry_after_past_the_deadline_stops_with_one_line(
    service: ContentSafetyStandIn,
) -> None:
    waits: list[float] = []
    client = ContentSafetyClient(
        service.base_url, Credential(), sleep=waits.append, deadline_seconds=5
    )
    service.throttle = ["30"]
    with pytest.raises(PhiError, match="past the 5 s deadline") as caught:
        client.analyze("hello")
    assert "\n" not in str(caught.value)
    assert [w for w in waits if w >= 1] == []
    assert len(service.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_says_which_role_is_missing(
    service: ContentSafetyStandIn, status: int
) -> None:
    service.refuse = status
    with pytest.raises(PhiError) as caught:
        ContentSafetyClient(service.base_url, Credential()).analyze("hello")
    message = str(caught.value)
    assert f"HTTP {status}" in message
    assert "Cognitive Services User" in message
    no_token_in(message)


def test_a_redirect_is_not_followed_and_the_token_stays_home(
    service: ContentSafetyStandIn,
) -> None:
    with content_safety() as elsewhere:
        service.redirect_to = elsewhere.base_url
        with pytest.raises(PhiError, match=r"redirect \(HTTP 307\).*not followed"):
            ContentSafetyClient(service.base_url, Credential()).analyze("hello")
        assert elsewhere.requests == []
    assert len(service.requests) == 1


class FakeTime:
    """A clock that only the client's own waits move."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def test_requests_start_no_faster_than_the_rate(service: ContentSafetyStandIn) -> None:
    fake = FakeTime()
    client = ContentSafetyClient(
        service.base_url, Credential(), rate=4, sleep=fake.sleep, clock=fake.clock
    )
    for text in ("one", "two", "three"):
        client.analyze(text)
    assert fake.waits == [0.25, 0.25]
    assert len(service.requests) == 3


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://cs-phi.cognitiveservices.azure.com/",  # a token in clear text
        "https://cs-phi.cognitiveservices.azure.com/contentsafety",
        "https://user:pw@cs-phi.cognitiveservices.azure.com/",
        "https://cs-phi.cognitiveservices.azure.com/?x=1",
        "ftp://cs-phi.cognitiveservices.azure.com/",
    ],
)
def test_only_an_https_endpoint_or_a_loopback_one_is_accepted(endpoint: str) -> None:
    with pytest.raises(UsageError, match="Content Safety endpoint"):
        endpoint_url(endpoint)
    assert endpoint_url("https://cs-phi.cognitiveservices.azure.com/").hostname
    assert endpoint_url("http://127.0.0.1:8080").port == 8080
    assert endpoint_url("http://[::1]:8080/").hostname == "::1"


def test_long_texts_are_split_within_the_documented_limit() -> None:
    text = ("word " * 4_999) + ("x" * 12_000) + " tail"
    cut = pieces(text)
    assert "".join(cut) == text
    assert all(len(piece) <= safety_client.MAX_TEXT == 10_000 for piece in cut)
    assert len(cut) == 4


# --- phi data screen ---


def test_screen_reports_each_flagged_row_by_file_and_line(
    tmp_path: Path,
    service: ContentSafetyStandIn,
    signed_in: TokenServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = chat_file(tmp_path / "train.jsonl")
    report = tmp_path / "out" / "report.json"
    code = main(
        [
            "data",
            "screen",
            str(data),
            "--endpoint",
            service.base_url,
            *S0_RATE,
            "--report",
            str(report),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.splitlines() == [
        f"{data}:2: Hate 4",
        f"{data}:4: SelfHarm 6",
        f"{data}:5: Violence 4",
    ]
    assert "3 flagged at or above severity 4" in captured.out
    document = json.loads(report.read_text())
    assert document["flaggedRows"] == 3
    assert document["flagged"][1] == {"source": str(data), "line": 4, "severities": {"SelfHarm": 6}}
    assert document["apiVersion"] == API_VERSION
    # every user and assistant message once (identical ones once), never the system message
    assert sorted(service.analyzed) == sorted(
        m["content"] for row in ROWS for m in row if m["role"] != "system"
    )
    assert signed_in.resources == ["https://cognitiveservices.azure.com"]
    cache = cache_path(report).read_text()
    no_token_in(captured.out, captured.err, report.read_text(), cache)
    assert "grimhate" not in cache  # hashes and severities, not the data


def test_identical_texts_are_sent_once(
    tmp_path: Path, service: ContentSafetyStandIn, signed_in: TokenServer
) -> None:
    same = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi"}]
    data = chat_file(tmp_path / "train.jsonl", [same, same, same])
    assert main(["data", "screen", str(data), "--endpoint", service.base_url, *S0_RATE]) == 0
    assert sorted(service.analyzed) == ["hello there", "hi"]


def test_a_higher_threshold_flags_less_and_a_clean_file_exits_0(
    tmp_path: Path,
    service: ContentSafetyStandIn,
    signed_in: TokenServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = chat_file(tmp_path / "train.jsonl")
    assert (
        main(
            [
                "data",
                "screen",
                str(data),
                "--endpoint",
                service.base_url,
                *S0_RATE,
                "--threshold",
                "high",
            ]
        )
        == 1
    )
    assert capsys.readouterr().err.splitlines() == [f"{data}:4: SelfHarm 6"]
    assert (tmp_path / "screen-report.json").is_file()  # beside the file by default
    clean = chat_file(tmp_path / "clean.jsonl", [ROWS[0], ROWS[2]])
    assert main(["data", "screen", str(clean), "--endpoint", service.base_url, *S0_RATE]) == 0


def test_an_interrupted_screen_resumed_sends_only_the_rest(
    tmp_path: Path,
    service: ContentSafetyStandIn,
    signed_in: TokenServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = chat_file(tmp_path / "train.jsonl")
    argv = ["data", "screen", str(data), "--endpoint", service.base_url, *S0_RATE]
    service.fail_after = 3
    assert main(argv) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("phi: error: Content Safety answered HTTP 500")
    first = list(service.analyzed)
    assert len(first) == 3
    service.fail_after = None
    service.requests.clear()
    assert main(argv) == 1
    second = service.analyzed
    assert set(first).isdisjoint(second)
    assert len(first) + len(second) == 10  # the ten distinct user and assistant texts
    assert "7 request(s) sent, 3 from the cache" in capsys.readouterr().out
    service.requests.clear()
    assert main(argv) == 1  # all cached: nothing sent
    assert service.requests == []


def test_a_dry_run_sends_nothing_and_asks_for_no_token(
    tmp_path: Path,
    service: ContentSafetyStandIn,
    signed_in: TokenServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = chat_file(tmp_path / "train.jsonl")
    assert (
        main(["data", "screen", str(data), "--endpoint", service.base_url, *S0_RATE, "--dry-run"])
        == 0
    )
    out = capsys.readouterr().out
    assert "would send 10 request(s)" in out
    assert "10 user and assistant message(s) in 5 row(s) of 1 file(s)" in out
    assert f"{service.base_url}/contentsafety/text:analyze?api-version={API_VERSION}" in out
    assert service.requests == []
    assert signed_in.resources == []
    assert not (tmp_path / "screen-report.json").exists()


def test_the_endpoint_comes_from_the_stack_outputs(
    tmp_path: Path,
    service: ContentSafetyStandIn,
    signed_in: TokenServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = chat_file(tmp_path / "train.jsonl", [ROWS[0]])
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"contentSafetyEndpoint": service.base_url + "/"}))
    assert main(["data", "screen", str(data), "--outputs", str(outputs)]) == 0
    assert len(service.requests) == 2
    outputs.write_text(json.dumps({"contentSafetyEndpoint": None}))
    assert main(["data", "screen", str(data), "--outputs", str(outputs)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "lack contentSafetyEndpoint" in line
    assert "pulumi config set contentSafety true" in line


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--threshold", "severe"], "--threshold 'severe'"),
        (["--endpoint", "http://example.com"], "http:// is accepted on the loopback"),
        (["--rate", "0"], "--rate 0"),
    ],
)
def test_bad_options_are_one_usage_line_before_anything_is_sent(
    tmp_path: Path,
    service: ContentSafetyStandIn,
    signed_in: TokenServer,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    says: str,
) -> None:
    data = chat_file(tmp_path / "train.jsonl")
    full = ["data", "screen", str(data), "--endpoint", service.base_url, *S0_RATE, *argv]
    assert main(full) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert says in line
    assert service.requests == []


def test_a_file_that_is_not_chat_jsonl_is_refused_in_one_line(
    tmp_path: Path, service: ContentSafetyStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": ROWS[0]}) + "\n{not json\n")
    assert main(["data", "screen", str(bad), "--endpoint", service.base_url, *S0_RATE]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert f"{bad}: not chat JSONL (1 problem(s), the first at line 2" in line
    assert (
        main(
            [
                "data",
                "screen",
                str(tmp_path / "none.jsonl"),
                "--endpoint",
                service.base_url,
                *S0_RATE,
            ]
        )
        == 2
    )
    assert service.requests == []


# --- phi data prepare --screen ---


def test_prepare_refuses_flagged_data_and_writes_nothing(
    tmp_path: Path,
    service: ContentSafetyStandIn,
    signed_in: TokenServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = chat_file(tmp_path / "source.jsonl")
    out = tmp_path / "prepared"
    argv = [
        "data",
        "prepare",
        "--from",
        str(data),
        "--out",
        str(out),
        "--endpoint",
        service.base_url,
        *S0_RATE,
    ]
    assert main([*argv, "--screen", "refuse"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"phi: error: 3 row(s) of {data} reach the screening threshold")
    assert f"{data}:2: Hate 4" in err
    assert not (out / "train_data.jsonl").exists()
    assert not (out / "eval_data.jsonl").exists()
    assert json.loads((out / "screen-report.json").read_text())["flaggedRows"] == 3


def test_prepare_drops_flagged_rows_and_says_how_many(
    tmp_path: Path,
    service: ContentSafetyStandIn,
    signed_in: TokenServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = chat_file(tmp_path / "source.jsonl")
    out = tmp_path / "prepared"
    argv = [
        "data",
        "prepare",
        "--from",
        str(data),
        "--out",
        str(out),
        "--endpoint",
        service.base_url,
        *S0_RATE,
    ]
    assert main([*argv, "--screen", "drop"]) == 0
    printed = capsys.readouterr().out
    assert "dropped 3 flagged row(s)" in printed
    kept = [
        json.loads(line)["messages"]
        for name in ("train_data.jsonl", "eval_data.jsonl")
        for line in (out / name).read_text().splitlines()
    ]
    assert sorted(map(json.dumps, kept)) == sorted(map(json.dumps, [ROWS[0], ROWS[2]]))


def test_prepare_without_an_endpoint_stops_before_reading_or_sending(
    tmp_path: Path, service: ContentSafetyStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    data = chat_file(tmp_path / "source.jsonl")
    outputs = tmp_path / "outputs.json"
    outputs.write_text("{}")
    out = tmp_path / "prepared"
    argv = ["data", "prepare", "--from", str(data), "--out", str(out), "--screen", "drop"]
    assert main([*argv, "--outputs", str(outputs)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "lack contentSafetyEndpoint" in line
    assert not out.exists()
    assert service.requests == []


def test_a_screening_option_without_screen_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = chat_file(tmp_path / "source.jsonl")
    argv = ["data", "prepare", "--from", str(data), "--out", str(tmp_path / "out")]
    assert main([*argv, "--threshold", "high"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "--threshold is a screening option: it needs --screen refuse|drop" in line
    assert not (tmp_path / "out").exists()


# --- the installed command in its own process ---


def test_the_token_never_reaches_output_files_or_logs(tmp_path: Path) -> None:
    """`phi --verbose data screen` in a subprocess signed in by DefaultAzureCredential through
    App Service managed identity (IDENTITY_ENDPOINT at a loopback token server): libraries'
    logs shown, and still no token anywhere but the Authorization header."""
    data = chat_file(tmp_path / "train.jsonl")
    with content_safety() as service, token_server() as tokens:
        env = without_azure_sign_in(tmp_path / "home", tokens.url)
        result = subprocess.run(
            [
                *PHI,
                "--verbose",
                "data",
                "screen",
                str(data),
                "--endpoint",
                service.base_url,
                *S0_RATE,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 1, result.stderr
        assert f"{data}:2: Hate 4" in result.stderr
        assert {r.authorization for r in service.requests} == {f"Bearer {TOKEN}"}
    written = [p.read_text() for p in tmp_path.rglob("*") if p.is_file()]
    no_token_in(result.stdout, result.stderr, *written)


def test_without_credentials_it_says_how_to_sign_in_and_sends_nothing(
    tmp_path: Path, no_managed_identity: str
) -> None:
    data = chat_file(tmp_path / "train.jsonl")
    with content_safety() as service:
        result = subprocess.run(
            [*PHI, "data", "screen", str(data), "--endpoint", service.base_url, *S0_RATE],
            cwd=ROOT,
            env=without_azure_sign_in(tmp_path / "home", no_managed_identity),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert service.requests == []
    assert_one_sign_in_line(result)
