"""Training throughput: the tutorial's recipe against ours, and SFT against DPO, same model,
same data, one run.

    .venv/bin/python scripts/benchmark_training.py            # CPU: a small Phi-3, ~3 minutes
    .venv/bin/python scripts/benchmark_training.py --steps 30 # on a GPU: full-size Phi-3-mini

Each recipe runs the real `jobs/train/src/train.py` in its own process (so peak memory is
its own) for a fixed number of steps, and the table compares what the script measured:
tokens per second, peak memory and, on a GPU, model FLOP utilisation: model FLOPs per token
x tokens/s over the GPU's peak dense bf16 FLOP/s. Model FLOPs per token are 6 x parameters
for a full fine-tune, 4 x for LoRA (its frozen weights need no weight gradients), and for DPO
2 x more for the reference model's forward pass (8 x, LoRA 6 x). Recomputed activations
(gradient checkpointing) are not model FLOPs, so they lower MFU, as they should. The model
is built from its config, randomly initialised: no download. On a CPU it is a small Phi-3
(the numbers show the code paths, not an A100); on a GPU it is Phi-3-mini's full 3.8B
architecture.

  tutorial:     eager attention, sequences wrapped into fixed-length blocks, gradient checkpointing
  ours:         attention from the hardware (flash attention 2 or SDPA), best-fit packing,
                padding-free, no gradient checkpointing
  ours + Liger: ours with Liger's fused Triton kernels (CUDA GPUs only)
  LoRA:         ours, training rank-16 adapters on every linear layer instead of the weights
  DPO:          TRL's DPOTrainer on preference pairs made from the same conversations (the
                reference answer chosen, another conversation's rejected), attention from the
                hardware, no gradient checkpointing; half the batch in pairs, so each step
                holds as many sequences as SFT's (a chosen and a rejected one per pair), and
                a second copy of the model as the reference. DPO cannot pack: every sequence
                is padded to the longest in its batch.
  DPO + LoRA:   DPO training the same adapters; the reference is the model with them off (no
                second copy)

Tokens are what the trainer counted: packed tokens for SFT, the padded chosen and rejected
sequences' non-padding tokens for DPO.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finetune_phi.core.folders import TRAIN_HYPERPARAMETERS, TRAIN_SOURCE  # noqa: E402

DPO_HYPERPARAMETERS = TRAIN_SOURCE / "hyperparameters-dpo.yaml"
from finetune_phi.data import SAMPLE  # noqa: E402
from finetune_phi.local.tiny_model import build_model, build_tokenizer  # noqa: E402

TUTORIAL = [
    "--attn_implementation",
    "eager",
    "--packing",
    "true",
    "--packing_strategy",
    "wrapped",
    "--activation_checkpointing",
    "true",
]
OURS = [
    "--attn_implementation",
    "auto",
    "--packing",
    "true",
    "--packing_strategy",
    "bfd",
    "--activation_checkpointing",
    "false",
]
LORA = ["--use_peft", "--lora_r", "16", "--lora_alpha", "32", "--lora_target_modules", "all-linear"]
DPO = ["--trainer", "dpo", "--attn_implementation", "auto", "--activation_checkpointing", "false"]
RECIPES = {
    "tutorial": TUTORIAL,
    "ours": OURS,
    "ours + Liger": [*OURS, "--use_liger_kernel", "true"],
    "LoRA": [*OURS, *LORA],
    "DPO": DPO,
    "DPO + LoRA": [*DPO, *LORA],
}
GPU_COMMAND = ".venv/bin/python scripts/benchmark_training.py --steps 30"
"""What to run where a GPU is lent: Phi-3-mini's full architecture, every recipe."""


def unavailable(recipe: str, gpu: bool) -> str | None:
    """Why this machine cannot run `recipe`, or None."""
    import importlib.util

    if recipe != "ours + Liger":
        return None
    if not gpu:
        return "Liger's kernels are Triton: CUDA GPUs only"
    if importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel is not installed (it is in the job's environment)"
    return None


# Peak dense bf16 FLOP/s by GPU name fragment, for MFU.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "V100": 125e12}


def build_benchmark_model(work: Path, gpu: bool) -> Path:
    texts = [
        m["content"]
        for line in SAMPLE.read_text().splitlines()
        for m in json.loads(line)["messages"]
    ]
    tokenizer = build_tokenizer(texts, work / "tokenizer")
    if not gpu:
        return build_model(tokenizer, work / "model", hidden_size=256, layers=4, heads=8)
    import torch
    from transformers import AutoTokenizer, Phi3Config, Phi3ForCausalLM

    config = Phi3Config()  # Phi-3-mini: 3.8B parameters, 32 layers, hidden 3072, vocab 32064
    config.pad_token_id = AutoTokenizer.from_pretrained(tokenizer).pad_token_id
    with torch.device("cuda"):
        model = Phi3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(work / "model")
    AutoTokenizer.from_pretrained(tokenizer).save_pretrained(work / "model")
    return work / "model"


def write_data(work: Path, copies: int) -> Path:
    rows = SAMPLE.read_text().splitlines()
    path = work / "train.jsonl"
    path.write_text("\n".join(rows * copies) + "\n")
    return path


def write_pairs(work: Path, copies: int) -> Path:
    """The sample's conversations as preference pairs: the prompt and its reference answer,
    chosen, against the answer of the conversation after it, rejected."""
    conversations = [json.loads(line)["messages"] for line in SAMPLE.read_text().splitlines()]
    answers = [messages[-1] for messages in conversations]
    pairs = []
    for index, messages in enumerate(conversations):
        others = [a for a in answers if a["content"] != messages[-1]["content"]]
        rejected = others[index % len(others)]
        pairs.append({"prompt": messages[:-1], "chosen": messages[-1:], "rejected": [rejected]})
    path = work / "pairs.jsonl"
    path.write_text("".join(json.dumps(pair) + "\n" for pair in pairs * copies))
    return path


def is_dpo(recipe: str) -> bool:
    return recipe.startswith("DPO")


def run(
    recipe: str, model: Path, data: dict[str, Path], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    out = work / recipe.replace(" + ", "-")
    dpo = is_dpo(recipe)
    # DPO's batch is in pairs, two sequences each: half as many keep the sequences per step.
    batch = max(1, args.batch_size // 2) if dpo else args.batch_size
    command = [
        sys.executable,
        str(TRAIN_SOURCE / "train.py"),
        "--config",
        str(DPO_HYPERPARAMETERS if dpo else TRAIN_HYPERPARAMETERS),
        "--model_name_or_path",
        str(model),
        "--train_file",
        str(data["dpo" if dpo else "sft"]),
        "--output_dir",
        str(out),
        "--model_output",
        str(out / "model"),
        "--write_mlflow_model",
        "false",
        "--max_steps",
        str(args.steps),
        "--max_length",
        str(args.max_length),
        "--per_device_train_batch_size",
        str(batch),
        "--gradient_accumulation_steps",
        "1",
        "--eval_strategy",
        "no",
        "--logging_steps",
        "1",
        "--learning_rate",
        "1e-4",
        *RECIPES[recipe],
    ]
    subprocess.run(command, check=True, capture_output=not args.verbose)
    metrics: dict[str, Any] = json.loads((out / "metrics.json").read_text())
    return metrics


def mfu(metrics: dict[str, Any]) -> str:
    peak = next((f for name, f in PEAK_FLOPS.items() if name in str(metrics["device"])), None)
    if peak is None:
        return "n/a"
    # Forward 2 x parameters, backward 4 x (2 x without weight gradients, LoRA's frozen
    # weights); DPO's reference model adds a forward pass.
    reference = 2 if metrics.get("trainer") == "dpo" else 0
    per_token = ((4 if metrics["peft"] else 6) + reference) * metrics["parameters"]
    return f"{per_token * metrics['tokens_per_second'] / peak:.1%}"


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--max-length", type=int, default=None, help="default: 512 on CPU, 2048 on GPU"
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--verbose", action="store_true", help="show the training logs")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    args.max_length = args.max_length or (2048 if gpu else 512)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_benchmark_model(work, gpu)
        copies = 400 if gpu else 40
        data = {"sft": write_data(work, copies), "dpo": write_pairs(work, copies)}
        skipped = {r: why for r in RECIPES if (why := unavailable(r, gpu))}
        results = {r: run(r, model, data, work, args) for r in RECIPES if r not in skipped}
    first = results["ours"]
    pairs = max(1, args.batch_size // 2)
    print(
        f"\n{first['device']}, {first['parameters'] / 1e6:.1f}M parameters, {first['dtype']}, "
        f"{args.steps} steps x batch {args.batch_size} (DPO: {pairs} pair{'s' * (pairs > 1)}) "
        f"x max_length {args.max_length}\n"
    )
    print(
        "| recipe | trainer | attention | packing | padding-free | checkpointing "
        "| trained parameters | tokens/s | peak memory (MiB) | MFU |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    for recipe in RECIPES:
        if recipe in skipped:
            print(f"| {recipe} | not run here: {skipped[recipe]} ||||||||")
            continue
        m = results[recipe]
        print(
            f"| {recipe} | {m['trainer']} | {m['attention']} | {m['packing']} "
            f"| {m['padding_free']} | {m['activation_checkpointing']} "
            f"| {m['trainable_parameters'] / 1e6:,.1f}M | {m['tokens_per_second']:,.0f} "
            f"| {m['peak_memory_mb']:,.0f} | {mfu(m)} |"
        )
    ratio = results["ours"]["tokens_per_second"] / results["tutorial"]["tokens_per_second"]
    print(f"\nours / tutorial throughput: {ratio:.2f}x")
    dpo = results["DPO"]["tokens_per_second"] / results["ours"]["tokens_per_second"]
    memory = results["DPO"]["peak_memory_mb"] / results["ours"]["peak_memory_mb"]
    print(f"DPO / SFT (ours): throughput {dpo:.2f}x, peak memory {memory:.2f}x")
    if not gpu:
        print(f"\nOn a GPU (Phi-3-mini's 3.8B architecture, bf16): {GPU_COMMAND}")


if __name__ == "__main__":
    main()
