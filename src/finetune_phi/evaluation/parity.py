"""Train/serve parity: the served model's greedy answers against the trained model's own,
computed in this process from the folder training wrote.

A served model that answers differently is not the model that was evaluated: the base model
served in its place, another chat template, an adapter left unmerged. But two correct
engines do not run the same arithmetic (vLLM's kernels are not transformers'): where the
trained model's two likeliest next tokens are close, a rounding difference picks the other
one, and the answers part there. So a divergence is forgiven only when it is exactly that: the
served answer goes on with the trained model's second choice, and the trained model's top
two logits were less than `tie_margin` apart. A different model parts elsewhere, or with
another token. Measured here: vLLM's CPU build and transformers, both fp32, parted once in
nine answers, on the runner-up, 0.11 apart; half precision on a GPU rounds more coarsely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from finetune_phi.evaluation.models import Decoding, EndpointModel, LocalModel, Model
from finetune_phi.evaluation.rows import EvalRow

CONTEXT_CHARS = 24
"""Characters shown on each side of a divergence."""
CUT_SHARE = 0.8
"""How much of the longer answer the shorter must hold to count as the same answer cut."""
LOGPROB_TOLERANCE = 0.02
"""The first token's log-probability, trained against served: measured 0.002 apart between
vLLM's CPU build and transformers in fp32; half precision needs more."""
TIE_MARGIN = 0.5
"""Logits closer than this are a near-tie two engines may round either way."""


@dataclass(frozen=True)
class Steps:
    """The trained model's greedy answer, with each step's text span and its margin (top
    logit minus the second)."""

    text: str
    ends: list[int]
    """Where each step's text ends, in characters of `text`."""
    margins: list[float]
    runners_up: list[str]
    """The text each step would have added with its second choice."""
    first_logprob: float | None
    """The first token's log-probability."""

    def step_at(self, character: int) -> int | None:
        """The step that wrote `character` (or ended the answer there); None past the end."""
        step = next((i for i, end in enumerate(self.ends) if character < end), None)
        if step is None and self.ends and self.ends[-1] >= character:
            step = len(self.ends) - 1
        return step

    def near_tie(self, served: str, character: int) -> float | None:
        """The trained model's margin where `served` parts from it at `character`, when the
        served answer goes on with its second choice there; None otherwise."""
        step = self.step_at(character)
        if step is None:
            return None
        start = self.ends[step - 1] if step else 0
        runner_up = self.runners_up[step]
        return self.margins[step] if runner_up and served[start:].startswith(runner_up) else None


def greedy_steps(model: LocalModel, prompt: list[dict[str, str]], max_new_tokens: int) -> Steps:
    import torch

    tokenizer = model.tokenizer
    inputs = tokenizer.apply_chat_template(
        prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        output = model.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=tokenizer.pad_token_id,
        )
    ids = output.sequences[0][inputs["input_ids"].shape[1] :].tolist()

    def text(tokens: list[int]) -> str:
        return str(tokenizer.decode(tokens, skip_special_tokens=True))

    raw = text(ids)
    lead = len(raw) - len(raw.lstrip())
    ends = [len(text(ids[: step + 1])) - lead for step in range(len(ids))]
    tops = [scores[0].topk(2) for scores in output.scores]
    margins = [float(top.values[0] - top.values[1]) for top in tops]
    first = float(torch.log_softmax(output.scores[0][0].float(), dim=-1)[ids[0]]) if ids else None
    runners_up = [
        text([*ids[:step], int(top.indices[1])])[len(text(ids[:step])) :]
        for step, top in enumerate(tops)
    ]
    return Steps(raw.strip(), ends, margins, runners_up, first)


@dataclass(frozen=True)
class Comparison:
    line: int
    trained: str
    served: str
    margin: float | None = None
    """Where the answers part on the trained model's second choice, its margin there."""
    logprob_gap: float | None = None
    """How far the served first token's log-probability is from the trained model's, where
    the server returns it and both begin alike."""

    @property
    def divergence(self) -> int | None:
        """The first character where the answers differ, or None when they agree."""
        if self.trained == self.served:
            return None
        pairs = zip(self.trained, self.served, strict=False)
        return next(
            (i for i, (a, b) in enumerate(pairs) if a != b),
            min(map(len, (self.trained, self.served))),
        )

    @property
    def cut_short(self) -> bool:
        """One answer is most of the other, cut: the same text in other tokens (a near-tie
        between "\n\n" and "\n", say) runs out of the token budget sooner."""
        short, long = sorted((self.trained, self.served), key=len)
        return bool(short) and long.startswith(short) and len(short) >= CUT_SHARE * len(long)

    def agrees(self, tie_margin: float) -> bool:
        """Equal answers, parted where the trained model had a near-tie, or cut short."""
        if self.divergence is None or self.cut_short:
            return True
        return self.margin is not None and self.margin < tie_margin

    def describe(self) -> str:
        at = self.divergence
        if at is None:
            return f"line {self.line}: agree"
        start, stop = max(at - CONTEXT_CHARS, 0), at + CONTEXT_CHARS
        margin = (
            ""
            if self.margin is None
            else f" (the trained model's second choice, {self.margin:.3g} behind its first)"
        )
        return (
            f"line {self.line}: differ at character {at}{margin}: trained "
            f"{self.trained[start:stop]!r}, served {self.served[start:stop]!r}"
        )


def compare(
    rows: Sequence[EvalRow],
    trained: LocalModel,
    served: Model,
    decoding: Decoding,
    progress: Callable[[Sequence[EvalRow]], Iterable[EvalRow]] = iter,
) -> list[Comparison]:
    """Both models' greedy answers to each held-out prompt, stripped as the scoring contract
    strips them, with the trained model's margin where they part."""
    comparisons = []
    for row in progress(rows):
        steps = greedy_steps(trained, row.prompt, decoding.max_new_tokens)
        served_text, served_logprob = served_answer(served, row.prompt, decoding)
        comparison = Comparison(row.line, steps.text, served_text)
        margin = (
            None
            if comparison.divergence is None
            else steps.near_tie(served_text, comparison.divergence)
        )
        first_alike = comparison.divergence is None or comparison.divergence > 0
        gap = (
            abs(served_logprob - steps.first_logprob)
            if served_logprob is not None and steps.first_logprob is not None and first_alike
            else None
        )
        comparisons.append(Comparison(row.line, steps.text, served_text, margin, gap))
    return comparisons


def served_answer(
    served: Model, prompt: list[dict[str, str]], decoding: Decoding
) -> tuple[str, float | None]:
    """The served answer, stripped, and its first token's log-probability where the endpoint
    speaks chat completions (which return them)."""
    if isinstance(served, EndpointModel) and served.client.api == "chat-completions":
        text, logprob = served.client.first_token_logprob(prompt, decoding.parameters())
        return text, logprob
    return served.answer(prompt, decoding).strip(), None


def largest_logprob_gap(comparisons: Sequence[Comparison]) -> float | None:
    gaps = [c.logprob_gap for c in comparisons if c.logprob_gap is not None]
    return max(gaps) if gaps else None


def agreement(comparisons: Sequence[Comparison], tie_margin: float = TIE_MARGIN) -> float:
    return sum(c.agrees(tie_margin) for c in comparisons) / len(comparisons)
