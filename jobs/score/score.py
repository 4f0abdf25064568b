"""Entry script of the scoring server (azureml-inference-server-http), locally and in Azure.

    AZUREML_MODEL_DIR=out/model azmlinfsrv --entry_script jobs/score/score.py --port 5001
    phi serve --model out/model          # the same, from the repository

`init()` loads the MLflow model once; `run(request)` answers the contract in `contract.py`:
the generated assistant text only, never the prompt. The batch shape's questions are
generated together, in one batched call. A request that breaks the contract
gets HTTP 400 with the reason, never a 500 with a traceback.

`run` takes the raw HTTP request (`@rawhttp`), so that the contract reads the body's bytes
itself: left to the inference server, a body that is not UTF-8 (Latin-1, UTF-16) would be
refused in the server's own shape (`{"message": ...}`), not the contract's `{"error": ...}`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contract import ContractError, GenerationParameters, parse_request  # type: ignore[import-not-found]
from openai_api import ChatRequest, Choice, token_logprob  # type: ignore[import-not-found]

try:
    from azureml_inference_server_http.api import aml_request
except ImportError:  # imported by jobs/score/server.py, or tests, without the inference server
    aml_request = None


def rawhttp(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The inference server's `@rawhttp` where it is installed: it then calls `func` with
    the HTTP request itself, not the body decoded as UTF-8."""
    if aml_request is not None:
        aml_request.rawhttp(func)
    return func


logger = logging.getLogger("finetune_phi.score")
_model: Any = None
_tokenizer: Any = None
_context: tuple[int, str] = (0, "")
"""The most tokens a conversation and its answer may take here, and why (see `context`)."""

CONTEXT_VARIABLE = "PHI_MAX_CONTEXT_TOKENS"
"""Caps the context below what the model and the GPU hold (an operator's choice)."""
INSTANCE_TYPE_VARIABLE = "PHI_INSTANCE_TYPE"
"""The VM size a managed deployment runs on, named when a conversation is too long for it."""
GPU_HEADROOM = 0.1
"""Share of the GPU's memory kept out of the KV cache: activations and the allocator's own."""


def find_mlflow_model(root: Path) -> Path:
    """The folder holding MLmodel: AZUREML_MODEL_DIR itself or a folder below it."""
    for pattern in ("MLmodel", "*/MLmodel", "*/*/MLmodel"):
        found = sorted(root.glob(pattern))
        if found:
            return found[0].parent
    raise FileNotFoundError(f"no MLmodel file in {root} or the two levels below it")


MLFLOW_LAYOUTS = {
    # mlflow.transformers.save_model: what train.py writes (and the catalog pipeline, from a
    # base model in this flavor).
    "transformers": ("model", "components/tokenizer", "model"),
    # azureml-evaluate-mlflow's hftransformers savers: what the catalog pipeline writes from a
    # registry model in that flavor, as registry Phi models are (azureml-assets
    # finetune_acft_hf_nlp model_selector.py FLAVOR_MAP, 2025-08-21).
    "hftransformersv2": ("data/model", "data/tokenizer", "data/config"),
    "hftransformers": ("data/model", "data/tokenizer", "data/config"),
}
"""Per MLflow flavor: the folders of the weights, the tokenizer and the config."""


def model_folders(mlflow_model: Path) -> tuple[str, Path, Path, Path]:
    """(flavor, weights, tokenizer, config folders) of an MLflow model folder, by the first
    flavor in its MLmodel this script loads; FileNotFoundError naming the flavors otherwise."""
    import yaml

    flavors = (yaml.safe_load((mlflow_model / "MLmodel").read_text()) or {}).get("flavors") or {}
    for flavor, folders in MLFLOW_LAYOUTS.items():
        if flavor in flavors:
            weights, tokenizer, config = (mlflow_model / folder for folder in folders)
            return flavor, weights, tokenizer, config
    raise FileNotFoundError(
        f"{mlflow_model / 'MLmodel'}: flavors {', '.join(flavors) or 'none'}; this server "
        f"loads {', '.join(MLFLOW_LAYOUTS)}"
    )


def load_components(mlflow_model: Path) -> tuple[Any, Any]:
    """(model, tokenizer) of an MLflow model folder of any flavor in MLFLOW_LAYOUTS. Remote
    code is never run: Phi-3.5 and Phi-4 models are in transformers itself."""
    flavor, weights, tokenizer, config = model_folders(mlflow_model)
    if flavor == "transformers":
        import mlflow

        components = mlflow.transformers.load_model(str(mlflow_model), return_type="components")
        return components["model"], components["tokenizer"]
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    settings = AutoConfig.from_pretrained(config if config.is_dir() else weights)
    model = AutoModelForCausalLM.from_pretrained(weights, config=settings)
    return model, AutoTokenizer.from_pretrained(tokenizer)


def instance_type() -> str:
    """The VM size a deployment named in PHI_INSTANCE_TYPE, or "this machine"."""
    return os.environ.get(INSTANCE_TYPE_VARIABLE) or "this machine"


def kv_cache_bytes_per_token(config: Any, dtype_bytes: int) -> int:
    """Keys and values of every layer for one token, from the model's config."""
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return 2 * int(config.num_hidden_layers) * kv_heads * head_dim * dtype_bytes


def gpu_context(config: Any, dtype_bytes: int, weights_bytes: int, gpu_bytes: int) -> int:
    """The most tokens one request's KV cache can hold in a GPU of `gpu_bytes` next to the
    weights, keeping GPU_HEADROOM free."""
    room = gpu_bytes * (1 - GPU_HEADROOM) - weights_bytes
    return max(0, int(room // kv_cache_bytes_per_token(config, dtype_bytes)))


def context(model: Any, torch: Any) -> tuple[int, str]:
    """(tokens, why) a conversation and its answer may take: the model's context, less on a
    GPU whose memory holds less next to the weights (a 16 GB T4 with a 3.8B model in fp16),
    less again under PHI_MAX_CONTEXT_TOKENS."""
    where = instance_type()
    limits = [(int(model.config.max_position_embeddings), "the model's context")]
    if torch.cuda.is_available():
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        gpu = int(torch.cuda.get_device_properties(0).total_memory)
        dtype_bytes = next(model.parameters()).element_size()  # the KV cache's, too
        held = gpu_context(model.config, dtype_bytes, weights, gpu)
        limits.append((held, f"what the GPU of {where} holds next to the weights"))
    if os.environ.get(CONTEXT_VARIABLE):
        limits.append((int(os.environ[CONTEXT_VARIABLE]), f"{CONTEXT_VARIABLE} on {where}"))
    return min(limits)


def precision(torch: Any) -> tuple[str, Any]:
    """(device, dtype) for this machine: bf16 on a GPU with native bf16 (compute capability
    8.0 or newer: A100, A10, H100), fp16 on older GPUs (T4), fp32 on a CPU."""
    if not torch.cuda.is_available():
        return "cpu", torch.float32
    major, _minor = torch.cuda.get_device_capability()
    return "cuda", torch.bfloat16 if major >= 8 else torch.float16


def init() -> None:
    global _model, _tokenizer, _context
    import torch

    model_dir = find_mlflow_model(Path(os.environ["AZUREML_MODEL_DIR"]))
    model, _tokenizer = load_components(model_dir)
    device, dtype = precision(torch)
    _model = model.to(device=device, dtype=dtype)
    if _tokenizer.pad_token is None:  # batches are padded; models from train.py set one
        _tokenizer.pad_token = _tokenizer.eos_token
    _model.eval()
    _context = context(_model, torch)
    logger.info("loaded %s from %s on %s in %s", type(_model).__name__, model_dir, device, dtype)


def marker_tokens(tokenizer: Any) -> set[int]:
    """The ids a chat template's markers use (`<|user|>`, `<|end|>`...): every added or
    special token. A message's own text must never become one of them."""
    return set(tokenizer.added_tokens_decoder) | set(tokenizer.all_special_ids)


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The conversation's token ids after the chat template, with every message's content
    read as text: a marker string typed inside a message (`<|end|><|assistant|>`, a forged
    turn) is tokenized as its characters, never as the marker token.

    The rendered conversation is tokenized once, as the template and training see it; only a
    marker token that lies inside a message's content is replaced by that text's ordinary
    tokens, so a conversation without such strings gets exactly the usual ids.
    """
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    markers = marker_tokens(tokenizer)
    spans = content_spans(text, messages, [tokenizer.convert_ids_to_tokens(i) for i in markers])
    ids: list[int] = []
    for token, (start, end) in zip(encoding["input_ids"], encoding["offset_mapping"], strict=True):
        if token in markers and any(low <= start < high for low, high in spans):
            piece = tokenizer(text[start:end], add_special_tokens=False, split_special_tokens=True)
            ids.extend(piece["input_ids"])
        else:
            ids.append(token)
    return ids


def content_spans(
    text: str, messages: list[dict[str, str]], markers: list[str]
) -> list[tuple[int, int]]:
    """Where each message's content lies in the rendered conversation. A content the
    template changed (so it cannot be found as written) is refused if it holds a marker."""
    spans, cursor = [], 0
    for index, message in enumerate(messages):
        content = message["content"]
        start = text.find(content, cursor)
        if start < 0:
            forged = [marker for marker in markers if marker in content]
            if forged:
                raise ContractError(
                    f"message {index} holds the chat template's marker {forged[0]!r}",
                    param=f"messages[{index}].content",
                )
            continue
        spans.append((start, start + len(content)))
        cursor = start + len(content)
    return spans


def check_context(
    ids: list[int], max_new_tokens: int, limit: tuple[int, str] | None = None
) -> None:
    """Refuse a conversation that, with its answer, would not fit `limit` (tokens, why;
    default this process's model's: its context, or what the GPU holds) before any
    generation."""
    tokens, why = limit or _context
    room = tokens - max_new_tokens
    if len(ids) > room:
        raise ContractError(
            f"the conversation is {len(ids)} tokens after the chat template; at most {room} "
            f"({why}, {tokens} tokens, minus max_new_tokens {max_new_tokens})"
        )


def prompt(messages: list[dict[str, str]], parameters: GenerationParameters) -> list[int]:
    ids = prompt_ids(_tokenizer, messages)
    check_context(ids, parameters.max_new_tokens)
    return ids


def decoding(
    max_new_tokens: int, temperature: float, top_p: float, stop: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`generate`'s options: greedy at temperature 0, sampling otherwise."""
    options: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "pad_token_id": _tokenizer.pad_token_id,
        "do_sample": temperature > 0,
    }
    if temperature > 0:
        options |= {"temperature": temperature, "top_p": top_p}
    if stop:
        options |= {"stop_strings": list(stop), "tokenizer": _tokenizer}
    return options


def end_tokens() -> set[int]:
    """The ids that end an answer: the generation config's and the tokenizer's end of text."""
    configured = _model.generation_config.eos_token_id
    ends = set(configured if isinstance(configured, list) else [configured])
    return {token for token in ends | {_tokenizer.eos_token_id} if token is not None}


def new_tokens(
    prompts: list[list[int]],
    options: Mapping[str, Any],
    streamer: Any = None,
    logits: list[Any] | None = None,
) -> list[list[int]]:
    """Every prompt's generated ids from one batched call, in order, each cut after its first
    end token (what follows is padding). With `logits`, each step's raw logits (batch by
    vocabulary) are appended to it.

    The prompts are padded on the left, with an attention mask, so each one ends where its
    answer starts. Under greedy decoding in fp32 (a CPU) the answers are those of one call
    per prompt; in half precision a padded batch can round a near-tie differently.
    """
    import torch

    batch = _tokenizer.pad(
        {"input_ids": prompts}, padding=True, padding_side="left", return_tensors="pt"
    ).to(_model.device)
    want = logits is not None
    with torch.inference_mode():
        output = _model.generate(
            **batch,
            **options,
            streamer=streamer,
            output_logits=want,
            return_dict_in_generate=want,
        )
    if logits is not None:
        logits.extend(output.logits)
    sequences = output.sequences if want else output
    ends = end_tokens()
    rows = []
    for row in sequences[:, batch["input_ids"].shape[1] :].tolist():
        cut = next((index for index, token in enumerate(row) if token in ends), None)
        rows.append(row if cut is None else row[: cut + 1])
    return rows


def generate(prompts: list[list[int]], parameters: GenerationParameters) -> list[str]:
    """The scoring contract's answers, in order."""
    temperature = parameters.temperature if parameters.do_sample else 0.0
    rows = new_tokens(prompts, decoding(parameters.max_new_tokens, temperature, parameters.top_p))
    return [str(_tokenizer.decode(row, skip_special_tokens=True)).strip() for row in rows]


def first_stop(text: str, stop: tuple[str, ...]) -> int | None:
    """Where the first stop string starts in `text`, or None."""
    found = [index for index in (text.find(s) for s in stop) if index >= 0]
    return min(found) if found else None


def choice(
    row: list[int], request: ChatRequest, logprobs: list[dict[str, Any]] | None = None
) -> Choice:
    """One answer in OpenAI's terms: its text up to a stop string, and why it ended."""
    text = str(_tokenizer.decode(row, skip_special_tokens=True))
    cut = first_stop(text, request.stop)
    if cut is not None:
        return Choice(text[:cut], "stop", len(row), logprobs)
    ended = bool(row) and row[-1] in end_tokens()
    finish = "stop" if ended or len(row) < request.max_tokens else "length"
    return Choice(text, finish, len(row), logprobs)


def answer_logprobs(
    row: list[int], index: int, logits: list[Any], top: int
) -> list[dict[str, Any]]:
    """OpenAI's `logprobs.content` for answer `index` of a batch: each token's
    log-probability under the model's own distribution (raw logits, before any sampling
    setting), and the `top` likeliest tokens at that step."""
    import torch

    entries = []
    for step, token in enumerate(row):
        logprobs = torch.log_softmax(logits[step][index].float(), dim=-1)
        best = logprobs.topk(top) if top else None
        alternatives = (
            []
            if best is None
            else [
                (str(_tokenizer.decode([int(i)])), float(v))
                for v, i in zip(best.values, best.indices, strict=True)
            ]
        )
        decoded = str(_tokenizer.decode([token]))
        entries.append(token_logprob(decoded, float(logprobs[token]), alternatives))
    return entries


def seeded(request: ChatRequest) -> None:
    import torch

    if request.seed is not None:
        torch.manual_seed(request.seed)


def complete(ids: list[int], request: ChatRequest) -> list[Choice]:
    """The `n` answers of a chat-completions request, from one batched call."""
    check_context(ids, request.max_tokens)
    seeded(request)
    options = decoding(request.max_tokens, request.temperature, request.top_p, request.stop)
    logits: list[Any] | None = [] if request.logprobs else None
    rows = new_tokens([ids] * request.n, options, logits=logits)
    return [
        choice(row, request, answer_logprobs(row, index, logits, request.top_logprobs))
        if logits is not None
        else choice(row, request)
        for index, row in enumerate(rows)
    ]


class Streamed:
    """One answer's text as it is generated (`for piece in streamed`), then its `choice`.

    A piece that could be the start of a stop string is held back until it is not, so the
    stream never shows a stop string or what follows it.
    """

    def __init__(self, ids: list[int], request: ChatRequest) -> None:
        check_context(ids, request.max_tokens)
        self.ids, self.request = ids, request
        self.choice = Choice("", "stop", 0)

    def __iter__(self) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        request = self.request
        streamer = TextIteratorStreamer(_tokenizer, skip_prompt=True, skip_special_tokens=True)
        options = decoding(request.max_tokens, request.temperature, request.top_p, request.stop)
        rows: list[list[int]] = []

        def run() -> None:
            seeded(request)
            try:
                rows.extend(new_tokens([self.ids], options, streamer))
            finally:
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        hold = max((len(s) for s in request.stop), default=1) - 1
        pending, stopped = "", False
        for piece in streamer:
            if stopped:
                continue
            pending += piece
            cut = first_stop(pending, request.stop)
            if cut is not None:
                pending, stopped = pending[:cut], True
            elif len(pending) > hold:
                yield pending[: len(pending) - hold]
                pending = pending[len(pending) - hold :]
        worker.join()
        if pending:
            yield pending
        if rows:
            self.choice = choice(rows[0], request)


@rawhttp
def run(request: Any) -> Any:
    """The contract over azureml-inference-server-http: `request` is its Flask request."""
    from azureml_inference_server_http.api.aml_response import AMLResponse

    if request.method == "OPTIONS":  # a CORS preflight, answered as the server would
        return AMLResponse("", 200)
    if request.method != "POST":
        return AMLResponse(
            {"error": f"{request.method} /score is not served; POST a JSON body"},
            405,
            json_str=True,
        )
    try:
        parsed = parse_request(request.get_data())
        prompts = [prompt(messages, parsed.parameters) for messages in parsed.conversations]
    except ContractError as error:
        return AMLResponse({"error": str(error)}, error.status, json_str=True)
    answers = generate(prompts, parsed.parameters)
    return AMLResponse(parsed.response(answers), 200, json_str=True)
