"""Entry script of the scoring server (azureml-inference-server-http), locally and in Azure.

    AZUREML_MODEL_DIR=out/model azmlinfsrv --entry_script jobs/score/score.py --port 5001
    phi serve --model out/model          # the same, from the repository

`init()` loads the MLflow model once; `run(raw)` answers the contract in `contract.py`:
the generated assistant text only, never the prompt. The batch shape's questions are
generated together, in one batched call. A request that breaks the contract
gets HTTP 400 with the reason, never a 500 with a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contract import ContractError, GenerationParameters, parse_request  # type: ignore[import-not-found]

logger = logging.getLogger("finetune_phi.score")
_model: Any = None
_tokenizer: Any = None


def find_mlflow_model(root: Path) -> Path:
    """The folder holding MLmodel: AZUREML_MODEL_DIR itself or a folder below it."""
    for pattern in ("MLmodel", "*/MLmodel", "*/*/MLmodel"):
        found = sorted(root.glob(pattern))
        if found:
            return found[0].parent
    raise FileNotFoundError(f"no MLmodel file in {root} or the two levels below it")


def precision(torch: Any) -> tuple[str, Any]:
    """(device, dtype) for this machine: bf16 on a GPU with native bf16 (compute capability
    8.0 or newer: A100, A10, H100), fp16 on older GPUs (T4), fp32 on a CPU."""
    if not torch.cuda.is_available():
        return "cpu", torch.float32
    major, _minor = torch.cuda.get_device_capability()
    return "cuda", torch.bfloat16 if major >= 8 else torch.float16


def init() -> None:
    global _model, _tokenizer
    import mlflow
    import torch

    model_dir = find_mlflow_model(Path(os.environ["AZUREML_MODEL_DIR"]))
    components = mlflow.transformers.load_model(str(model_dir), return_type="components")
    device, dtype = precision(torch)
    _model, _tokenizer = components["model"].to(device=device, dtype=dtype), components["tokenizer"]
    if _tokenizer.pad_token is None:  # batches are padded; models from train.py set one
        _tokenizer.pad_token = _tokenizer.eos_token
    _model.eval()
    logger.info("loaded %s from %s on %s in %s", type(_model).__name__, model_dir, device, dtype)


def prompt(messages: list[dict[str, str]], parameters: GenerationParameters) -> list[int]:
    """The conversation's token ids, refused when it and the answer would not fit the
    model's context."""
    ids: list[int] = _tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    room = int(_model.config.max_position_embeddings) - parameters.max_new_tokens
    if len(ids) > room:
        raise ContractError(
            f"the conversation is {len(ids)} tokens after the chat template; at most {room} "
            f"(the model's context of {_model.config.max_position_embeddings} minus "
            f"max_new_tokens {parameters.max_new_tokens})"
        )
    return ids


def generate(prompts: list[list[int]], parameters: GenerationParameters) -> list[str]:
    """Every conversation's answer from one batched call, in order.

    The prompts are padded on the left, with an attention mask, so each one ends where its
    answer starts. Under greedy decoding in fp32 (a CPU) the answers are those of one call
    per prompt; in half precision a padded batch can round a near-tie differently.
    """
    import torch

    options: dict[str, Any] = {"max_new_tokens": parameters.max_new_tokens}
    if parameters.do_sample and parameters.temperature > 0:
        options |= {
            "do_sample": True,
            "temperature": parameters.temperature,
            "top_p": parameters.top_p,
        }
    else:
        options["do_sample"] = False
    batch = _tokenizer.pad(
        {"input_ids": prompts}, padding=True, padding_side="left", return_tensors="pt"
    ).to(_model.device)
    with torch.inference_mode():
        output = _model.generate(**batch, **options, pad_token_id=_tokenizer.pad_token_id)
    answers = _tokenizer.batch_decode(
        output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True
    )
    return [str(answer).strip() for answer in answers]


def run(raw: str) -> Any:
    from azureml_inference_server_http.api.aml_response import AMLResponse

    try:
        request = parse_request(raw)
        prompts = [prompt(messages, request.parameters) for messages in request.conversations]
    except ContractError as error:
        return AMLResponse({"error": str(error)}, error.status, json_str=True)
    answers = generate(prompts, request.parameters)
    return AMLResponse(request.response(answers), 200, json_str=True)
