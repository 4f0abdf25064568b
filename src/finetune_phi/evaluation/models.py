"""The two models under comparison, each answering the held-out prompts with the same
decoding: a local folder (a Hugging Face model, or the MLflow model `phi train --local`
writes), a hub id, or an endpoint spoken to through its contract."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from finetune_phi.core.errors import UsageError
from finetune_phi.core.folders import SCORE_SOURCE
from finetune_phi.data import hub
from finetune_phi.endpoint_client import EndpointClient

LOSS_TOKENS = (
    "mean cross-entropy per token over the reference turn's tokens (the assistant's text and "
    "its end-of-turn marker, as the chat template writes them), given every token before it; "
    "the prompt's tokens do not count"
)


def looks_like_a_path(spec: str) -> bool:
    """True when `spec` can only be a folder: absolute, `~`, `.` or `..` first, a trailing
    slash, or more than one slash (a hub id is `name` or `namespace/name`)."""
    return (
        spec.startswith(("/", "~", "./", "../", "\\"))
        or spec in (".", "..")
        or spec.endswith(("/", "\\"))
        or spec.count("/") > 1
    )


def model_location(spec: str, flag: str) -> str:
    """A model folder that exists, as an absolute path; a hub id as given. A folder given by a
    relative path is made absolute before any library sees it: MLflow and the hub's client take
    a relative name such as `tiny-base` for a repository id, and retry the hub for it. A value
    that can only be a folder and does not exist is refused here, not sent to the hub."""
    folder = Path(spec).expanduser()
    if folder.exists():
        return str(folder.resolve())
    if looks_like_a_path(spec):
        raise UsageError(f"{flag} {spec}: no such folder")
    return spec


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 128
    seed: int | None = None
    """None: greedy; a seed: sampling (temperature 0.7, top_p 0.9) from that seed."""

    def parameters(self) -> dict[str, Any]:
        """The scoring contract's parameters for this decoding."""
        if self.seed is None:
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        return {
            "do_sample": True,
            "temperature": 0.7,
            "top_p": 0.9,
            "max_new_tokens": self.max_new_tokens,
        }


class Model(Protocol):
    name: str

    def answer(self, prompt: list[dict[str, str]], decoding: Decoding) -> str: ...

    def loss(self, prompt: list[dict[str, str]], reference: str) -> tuple[float, int] | None:
        """(summed cross-entropy, tokens) of the reference given the prompt, or None when
        the weights are not at hand."""
        ...


def scoring_script() -> Any:
    """jobs/score/score.py as a module: what is evaluated and verified is loaded as the
    engines load it, whatever MLflow flavor the model was saved in (ours, or the catalog
    pipeline's hftransformersv2)."""
    name = "finetune_phi_score"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCORE_SOURCE / "score.py")
        assert spec is not None
        assert spec.loader is not None
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        sys.modules[name] = script
    return sys.modules[name]


@dataclass
class LocalModel:
    name: str
    model: Any
    tokenizer: Any
    files: Path | None = None
    """The folder the model was loaded from (the one holding `MLmodel`, for an MLflow model);
    None for a hub id."""

    @classmethod
    def load(cls, spec: str, flag: str) -> LocalModel:
        spec = model_location(spec, flag)
        folder = Path(spec)
        mlmodel = next(
            (p.parent for p in (folder / "MLmodel", folder / "model" / "MLmodel") if p.is_file()),
            None,
        )
        if mlmodel is None and not folder.exists():
            hub.require(spec, flag, "a local model folder")
        try:
            if mlmodel is not None:
                model, tokenizer = scoring_script().load_components(mlmodel)
            else:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(spec)
                model = AutoModelForCausalLM.from_pretrained(spec)
        except (OSError, ValueError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise UsageError(f"{flag} {spec}: the model does not load ({first})") from None
        model.eval()
        return cls(spec, model, tokenizer, mlmodel or (folder if folder.is_dir() else None))

    def answer(self, prompt: list[dict[str, str]], decoding: Decoding) -> str:
        import torch

        inputs = self.tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        options: dict[str, Any] = {"max_new_tokens": decoding.max_new_tokens, "do_sample": False}
        if decoding.seed is not None:
            torch.manual_seed(decoding.seed)
            options |= {"do_sample": True, "temperature": 0.7, "top_p": 0.9}
        with torch.inference_mode():
            output = self.model.generate(
                **inputs, **options, pad_token_id=self.tokenizer.pad_token_id
            )
        generated = output[0][inputs["input_ids"].shape[1] :]
        return str(self.tokenizer.decode(generated, skip_special_tokens=True)).strip()

    def loss(self, prompt: list[dict[str, str]], reference: str) -> tuple[float, int]:
        import torch

        before = self.tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        whole = self.tokenizer.apply_chat_template(
            [*prompt, {"role": "assistant", "content": reference}],
            return_tensors="pt",
            return_dict=True,
        )["input_ids"]
        if not torch.equal(whole[0, : before.shape[1]], before[0]):
            raise UsageError(
                f"{self.name}: its chat template does not extend the prompt; loss is undefined"
            )
        labels = whole.clone()
        labels[:, : before.shape[1]] = -100
        with torch.inference_mode():
            mean = float(self.model(input_ids=whole, labels=labels).loss)
        tokens = int(whole.shape[1] - before.shape[1])
        return mean * tokens, tokens


@dataclass
class EndpointModel:
    """An endpoint, through the scoring contract (or chat-completions): no weights, no loss."""

    name: str
    client: EndpointClient

    def answer(self, prompt: list[dict[str, str]], decoding: Decoding) -> str:
        return self.client.chat(prompt, decoding.parameters())

    def loss(self, prompt: list[dict[str, str]], reference: str) -> None:
        return None
