"""The chat flow on Microsoft Agent Framework, Prompt flow's successor: the same chat as
flow.dag.yaml, as a workflow of two executors.

    phi chat --agent --stack dev "Which river flows through it?"
    PHI_ENDPOINT_URL=... PHI_ENDPOINT_KEY=... .venv-agent/bin/python flow/agent/chat.py \
        --question "Which river flows through it?" \
        --chat-history '[{"inputs": {"question": "Capital of France?"}, "outputs": {"answer": "Paris."}}]'

Prompt flow -> Agent Framework (Microsoft's migration guide):
- the flow (flow.dag.yaml) -> `create_workflow()`, a WorkflowBuilder graph; a factory,
  since one workflow instance runs one request at a time;
- the `call_endpoint` node -> two executors: `HistoryToMessages` (question and chat
  history, Prompt flow's format, to messages) and `CallEndpoint` (the endpoint, through a
  chat client); the answer is the workflow's output;
- the `phi3-endpoint` connection -> PHI_ENDPOINT_URL, PHI_ENDPOINT_KEY, PHI_ENDPOINT_API
  (`chat-completions`, the default, or `score`). This folder fetches no key: `phi chat
  --agent` finds the stack's endpoint and its key, as for any chat, and hands them to this
  script.

An endpoint that speaks OpenAI's chat completions (`phi serve` on either engine, a managed
deployment of the vllm engine, a serverless or Foundry endpoint) is asked through the
framework's own `OpenAIChatCompletionClient`, on the `openai` SDK. PHI_ENDPOINT_URL may be
its base URL (`http://127.0.0.1:5001`), its `/v1` URL or its full `/chat/completions` URL;
the model asked for is `phi`, the served model's name, or PHI_ENDPOINT_MODEL (an endpoint
that names its deployments otherwise). What our own client promises holds here too:
redirects are never followed but reported (the key goes to the URL's host only, as
`Authorization: Bearer`, and no OPENAI_* variable of the environment adds a key, header or
organization to the request), one deadline (--timeout) holds for the whole call, retries
and waits included, and every failure is one line without the key. Only the scoring
contract, which Azure managed deployments of the transformers engine speak and nothing
else, still needs our `EndpointChatClient`.

The node's fixed inputs (system prompt, max_new_tokens) and the input defaults are read
from the Prompt flow folder's flow.dag.yaml, so both engines send the same request. It runs in its own
environment (`make venv-agent`: .venv-agent), as Prompt flow and Agent Framework need
incompatible OpenTelemetry versions.
"""

import argparse
import asyncio
import contextlib
import json
import os
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Never

import yaml
from agent_framework import (
    BaseChatClient,
    ChatResponse,
    Executor,
    Message,
    WorkflowBuilder,
    WorkflowContext,
    handler,
)

from finetune_phi.endpoint_client import (
    APIS,
    EndpointClient,
    EndpointError,
    explain,
    history_messages,
)
from finetune_phi.serving.engine import SERVED_MODEL

DAG = Path(__file__).resolve().parents[1] / "promptflow" / "flow.dag.yaml"
"""The Prompt flow DAG whose fixed inputs this chat shares."""
ENDPOINT_VARIABLES = (
    "PHI_ENDPOINT_URL",
    "PHI_ENDPOINT_KEY",
    "PHI_ENDPOINT_API",
    "PHI_ENDPOINT_MODEL",
)


@dataclass(frozen=True)
class FlowDefaults:
    """What flow.dag.yaml fixes: the node's system prompt and token budget, and the
    temperature input's default."""

    system_prompt: str
    max_new_tokens: int
    temperature: float

    @classmethod
    def read(cls, dag: Path = DAG) -> "FlowDefaults":
        flow = yaml.safe_load(dag.read_text(encoding="utf-8"))
        node = next(n for n in flow["nodes"] if n["name"] == "call_endpoint")["inputs"]
        return cls(
            str(node["system_prompt"]),
            int(node["max_new_tokens"]),
            float(flow["inputs"]["temperature"]["default"]),
        )


@dataclass(frozen=True)
class ChatRequest:
    """The flow's inputs."""

    question: str
    chat_history: list[Any] = field(default_factory=list)
    temperature: float | None = None


class EndpointChatClient(BaseChatClient):
    """The scoring contract (PHI_ENDPOINT_API=score) as an Agent Framework chat client, over
    `EndpointClient`, with every property of that client (retries, one deadline, no
    redirects, clear 401/404/424 messages, the key never shown). For `score` only: Azure
    managed deployments of the transformers engine speak that contract and nothing else.
    Whatever speaks chat completions is asked through the framework's own
    `OpenAIChatCompletionClient` (`chat_client`)."""

    OTEL_PROVIDER_NAME = "finetune-phi"

    def __init__(self, endpoint: EndpointClient) -> None:
        super().__init__()
        self.endpoint = endpoint

    async def _inner_get_response(
        self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any], **_: Any
    ) -> ChatResponse:
        if stream:
            raise NotImplementedError("the scoring contract answers whole; call without stream")
        plain = [{"role": str(m.role), "content": m.text} for m in messages]
        parameters = {
            "temperature": options.get("temperature"),
            "max_new_tokens": options.get("max_tokens"),
        }
        answer = await asyncio.to_thread(
            self.endpoint.chat, plain, {k: v for k, v in parameters.items() if v is not None}
        )
        return ChatResponse(messages=[Message(role="assistant", contents=[answer])])


class HistoryToMessages(Executor):
    """Prompt flow's chat history and the question, as the conversation's messages."""

    def __init__(self, defaults: FlowDefaults) -> None:
        super().__init__(id="history_to_messages")
        self.defaults = defaults

    @handler
    async def build(
        self, request: ChatRequest, ctx: WorkflowContext[tuple[list[Message], float]]
    ) -> None:
        turns = history_messages(
            request.chat_history, request.question, self.defaults.system_prompt
        )
        temperature = (
            self.defaults.temperature if request.temperature is None else request.temperature
        )
        await ctx.send_message(
            ([Message(role=t["role"], contents=[t["content"]]) for t in turns], temperature)
        )


class CallEndpoint(Executor):
    """The endpoint's answer to the conversation: the workflow's output."""

    def __init__(self, client: BaseChatClient, defaults: FlowDefaults) -> None:
        super().__init__(id="call_endpoint")
        self.client = client
        self.defaults = defaults

    @handler
    async def call(
        self, conversation: tuple[list[Message], float], ctx: WorkflowContext[Never, str]
    ) -> None:
        messages, temperature = conversation
        options = {"temperature": temperature, "max_tokens": self.defaults.max_new_tokens}
        response = await self.client.get_response(messages, options=options)
        await ctx.yield_output(response.text)


def openai_base_url(url: str) -> str:
    """The OpenAI base URL of an endpoint named by its base URL, its `/v1` URL or its full
    `/chat/completions` URL (any query left out: see `openai_query`)."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    if path.endswith("/chat/completions"):
        path = path.removesuffix("/chat/completions")
    elif not path.endswith("/v1"):
        path = f"{path}/v1"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def openai_query(url: str) -> dict[str, str]:
    """The URL's query (a Foundry endpoint's `api-version`, say), sent with every request."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


@contextlib.contextmanager
def without_openai_environment() -> Iterator[None]:
    """No OPENAI_* variable while the SDK client is made: it would read OPENAI_API_KEY,
    OPENAI_CUSTOM_HEADERS (an Authorization header, say), OPENAI_ORG_ID and OPENAI_PROJECT_ID
    from it and send them to this endpoint, whose own key is the only one to go there."""
    saved = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("OPENAI_")}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextlib.asynccontextmanager
async def chat_client(endpoint: EndpointClient, model: str) -> AsyncIterator[BaseChatClient]:
    """The framework's `OpenAIChatCompletionClient` for an endpoint that speaks chat
    completions, its connections closed at the end; our `EndpointChatClient` for the scoring
    contract."""
    if endpoint.api != "chat-completions":
        yield EndpointChatClient(endpoint)
        return
    import openai
    from agent_framework.openai import OpenAIChatCompletionClient

    async def no_authorization(request: Any) -> None:
        request.headers.pop("Authorization", None)

    # The SDK's own httpx client (its connection limits), but redirects reported, never
    # followed (the SDK's follows them): the question and the key go to the URL's host and
    # path only. Without a key no Authorization header goes at all (the SDK wants some key).
    hooks = {} if endpoint.key else {"request": [no_authorization]}
    async with openai.DefaultAsyncHttpxClient(
        follow_redirects=False, timeout=endpoint.timeout, event_hooks=hooks
    ) as transport:
        with without_openai_environment():
            sdk = openai.AsyncOpenAI(
                base_url=openai_base_url(endpoint.scoring_uri),
                api_key=endpoint.key or "no-key",
                default_query=openai_query(endpoint.scoring_uri),
                max_retries=endpoint.retries,
                timeout=endpoint.timeout,
                http_client=transport,
            )
            client = OpenAIChatCompletionClient(model=model, async_client=sdk)
        yield client


def create_workflow(client: BaseChatClient, defaults: FlowDefaults | None = None) -> Any:
    """A new workflow for one run at a time: history to messages, then the endpoint through
    `client`."""
    defaults = defaults or FlowDefaults.read()
    history = HistoryToMessages(defaults)
    call = CallEndpoint(client, defaults)
    return WorkflowBuilder(start_executor=history).add_edge(history, call).build()


async def answer(endpoint: EndpointClient, request: ChatRequest, model: str = SERVED_MODEL) -> str:
    """Run a fresh workflow on one request, within the endpoint's deadline; its output, or
    the endpoint's error."""
    try:
        async with asyncio.timeout(endpoint.timeout), chat_client(endpoint, model) as client:
            result = await create_workflow(client).run(request)
    except TimeoutError:
        raise EndpointError(None, f"no answer within {endpoint.timeout:g} s") from None
    except EndpointError:
        raise
    except Exception as error:
        failure = openai_failure(error, endpoint)
        if failure is None:
            raise
        raise failure from None
    outputs = result.get_outputs()
    if not outputs:
        raise EndpointError(None, "the workflow ended without an answer")
    return str(outputs[0]).strip()


def openai_failure(error: BaseException, endpoint: EndpointClient) -> EndpointError | None:
    """The OpenAI SDK's failure under the framework's wrapper, in the endpoint client's
    words (the key masked); None for anything else."""
    import openai
    from agent_framework.exceptions import ChatClientException

    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, openai.APIError):
        cause = cause.__cause__
    if cause is None and isinstance(error, ChatClientException):
        inner = error.__cause__ or error
        first = (str(inner).splitlines() or [type(inner).__name__])[0][:200]
        return EndpointError(None, f"the endpoint answered outside chat completions ({first})")
    if isinstance(cause, openai.APITimeoutError):
        return EndpointError(None, f"no answer within {endpoint.timeout:g} s")
    if isinstance(cause, openai.APIConnectionError):
        return EndpointError(
            None, f"cannot reach {endpoint.scoring_uri}: check the URL and that the endpoint is up"
        )
    if isinstance(cause, openai.APIStatusError):
        response = cause.response
        text = explain(response.status_code, response.text, dict(response.headers))
        if 300 <= response.status_code < 400:
            text = (
                f"the endpoint answered a redirect (HTTP {response.status_code}) to "
                f"{response.headers.get('location', 'nowhere')}; not followed, so the key goes "
                "to the endpoint's host only: check the URL"
            )
        return EndpointError(response.status_code, text.replace(endpoint.key or "\0", "***"))
    return None


class UsageError(ValueError):
    """A wrong option or a missing setting; exit 2."""


def endpoint_from_environment(timeout: float) -> EndpointClient:
    url = os.environ.get("PHI_ENDPOINT_URL", "")
    api = os.environ.get("PHI_ENDPOINT_API") or "chat-completions"
    if not url:
        raise UsageError(
            "no endpoint: set PHI_ENDPOINT_URL (and PHI_ENDPOINT_KEY, PHI_ENDPOINT_API), or "
            "run `phi chat --agent` with --stack, --outputs or --url"
        )
    if api not in APIS:
        raise UsageError(f"PHI_ENDPOINT_API={api!r}: must be one of {', '.join(APIS)}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"PHI_ENDPOINT_URL={url!r}: must be an http(s) URL")
    return EndpointClient(
        url, key=os.environ.get("PHI_ENDPOINT_KEY") or None, api=api, timeout=timeout
    )


def model_from_environment() -> str:
    """The model to ask a chat-completions endpoint for: PHI_ENDPOINT_MODEL, or `phi`, the
    name `phi serve` and our vllm deployments serve the model under."""
    return os.environ.get("PHI_ENDPOINT_MODEL") or SERVED_MODEL


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="flow/agent/chat.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--question", required=True)
    parser.add_argument("--chat-history", default="[]", help="JSON list in Prompt flow's format")
    parser.add_argument("--temperature", type=float, help="default: flow.dag.yaml's")
    parser.add_argument("--json", action="store_true", help='print {"answer": ...}')
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole call")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        history = json.loads(args.chat_history)
        if not isinstance(history, list):
            raise UsageError("--chat-history must be a JSON list of {inputs, outputs} turns")
        endpoint = endpoint_from_environment(args.timeout)
        request = ChatRequest(args.question, history, args.temperature)
        text = asyncio.run(answer(endpoint, request, model_from_environment()))
    except json.JSONDecodeError as error:
        print(f"chat.py: error: --chat-history is not JSON ({error.msg})", file=sys.stderr)
        return 2
    except UsageError as error:
        print(f"chat.py: error: {error}", file=sys.stderr)
        return 2
    except EndpointError as error:
        print(f"chat.py: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"answer": text}) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
