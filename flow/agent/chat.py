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
  history, Prompt flow's format, to messages) and `CallEndpoint` (the endpoint, through
  `EndpointChatClient`); the answer is the workflow's output;
- the `phi3-endpoint` connection -> PHI_ENDPOINT_URL, PHI_ENDPOINT_KEY, PHI_ENDPOINT_API
  (`score` or `chat-completions`). This folder fetches no key: `phi chat --agent` finds the
  stack's endpoint and its key, as for any chat, and hands them to this script.

The node's fixed inputs (system prompt, max_new_tokens) and the input defaults are read
from the Prompt flow folder's flow.dag.yaml, so both engines send the same request. It runs in its own
environment (`make venv-agent`: .venv-agent), as Prompt flow and Agent Framework need
incompatible OpenTelemetry versions.
"""

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
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

from finetune_phi.endpoint_client import APIS, EndpointClient, EndpointError, history_messages

DAG = Path(__file__).resolve().parents[1] / "promptflow" / "flow.dag.yaml"
"""The Prompt flow DAG whose fixed inputs this chat shares."""
ENDPOINT_VARIABLES = ("PHI_ENDPOINT_URL", "PHI_ENDPOINT_KEY", "PHI_ENDPOINT_API")


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
    """The endpoint as an Agent Framework chat client, over `EndpointClient`: the managed
    endpoint's scoring contract or a serverless endpoint's chat-completions, with every
    property of that client (retries, one deadline, no redirects, clear 401/404/424
    messages, the key never shown)."""

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

    def __init__(self, client: EndpointChatClient, defaults: FlowDefaults) -> None:
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


def create_workflow(endpoint: EndpointClient, defaults: FlowDefaults | None = None) -> Any:
    """A new workflow for one run at a time: history to messages, then the endpoint."""
    defaults = defaults or FlowDefaults.read()
    history = HistoryToMessages(defaults)
    call = CallEndpoint(EndpointChatClient(endpoint), defaults)
    return WorkflowBuilder(start_executor=history).add_edge(history, call).build()


async def answer(endpoint: EndpointClient, request: ChatRequest) -> str:
    """Run a fresh workflow on one request; its output, or the endpoint's error."""
    result = await create_workflow(endpoint).run(request)
    outputs = result.get_outputs()
    if not outputs:
        raise EndpointError(None, "the workflow ended without an answer")
    return str(outputs[0])


class UsageError(ValueError):
    """A wrong option or a missing setting; exit 2."""


def endpoint_from_environment(timeout: float) -> EndpointClient:
    url = os.environ.get("PHI_ENDPOINT_URL", "")
    api = os.environ.get("PHI_ENDPOINT_API", "score") or "score"
    if not url:
        raise UsageError(
            "no endpoint: set PHI_ENDPOINT_URL (and PHI_ENDPOINT_KEY, PHI_ENDPOINT_API), or "
            "run `phi chat --agent` with --stack, --outputs or --url"
        )
    if api not in APIS:
        raise UsageError(f"PHI_ENDPOINT_API={api!r}: must be one of {', '.join(APIS)}")
    return EndpointClient(
        url, key=os.environ.get("PHI_ENDPOINT_KEY") or None, api=api, timeout=timeout
    )


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
        text = asyncio.run(answer(endpoint, ChatRequest(args.question, history, args.temperature)))
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
