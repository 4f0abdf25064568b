"""Fine-tune a Phi model with TRL's SFTTrainer and write it as an MLflow model.

This folder is what Azure ML uploads as the job's code, so the script depends on nothing
else in the repository. Hyperparameters come from `hyperparameters.yaml` next to it;
any TRL or Trainer argument on the command line overrides them, in TRL's own spelling.

Launch:

    # one process (CPU or one GPU)
    python train.py --config hyperparameters.yaml \
        --train_file data/train_data.jsonl --eval_file data/test_data.jsonl \
        --model_output outputs/model

    # several GPUs on one node; Azure ML starts this for you with `phi finetune submit --gpus-per-node 4`
    torchrun --nproc_per_node 4 train.py --config hyperparameters.yaml ...

    # from the repository: the same script, locally
    phi train --local --model PATH_OR_ID --train-file F --eval-file F --output-dir DIR

Precision and attention follow the hardware unless given: bf16 (fp16 without bf16 support)
with flash attention when installed, else SDPA, on a GPU; fp32 with SDPA on a CPU.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Parameters logged to MLflow: Azure ML rejects the Trainer's full set (hundreds of keys,
# some values over its length limit), so the script logs this curated set instead.
LOGGED_PARAMETERS = (
    "learning_rate",
    "lr_scheduler_type",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "warmup_steps",
    "max_length",
    "packing",
    "gradient_checkpointing",
    "bf16",
    "fp16",
    "seed",
)
LOGGED_METRICS = ("loss", "eval_loss", "learning_rate", "grad_norm", "epoch", "train_loss")


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(
        default="",
        metadata={
            "help": "Hugging Face model id or local folder to fine-tune (hyperparameters.yaml names the tutorial's)."
        },
    )
    train_file: str = field(default="", metadata={"help": "Training data, chat JSONL."})
    eval_file: str = field(default="", metadata={"help": "Evaluation data, chat JSONL (optional)."})
    model_output: str = field(
        default="outputs/model", metadata={"help": "Folder the MLflow model is written to."}
    )
    write_mlflow_model: bool = field(
        default=True, metadata={"help": "Write the MLflow model (false for throughput benchmarks)."}
    )
    attn_implementation: str = field(
        default="auto",
        metadata={"help": "auto (from the hardware), eager, sdpa or flash_attention_2."},
    )


def hardware_defaults(argv: list[str]) -> list[str]:
    """Precision (and CPU mode) from the hardware, unless the command line or config sets it.

    SFTConfig turns an unset bf16 into True, which fails on a CPU, so this has to be decided
    before the config object exists. On a CPU, `--use_cpu` is also what makes Accelerate
    join the processes of a torchrun launch into one (gloo) process group.
    """
    import torch
    import yaml

    given = {arg.removeprefix("--").split("=")[0] for arg in argv if arg.startswith("--")}
    if "config" in given:
        config_path = argv[argv.index("--config") + 1]
        given |= set(yaml.safe_load(Path(config_path).read_text()) or {})
    if not torch.cuda.is_available():
        defaults = {"bf16": "false", "fp16": "false", "use_cpu": "true"}
    else:
        # Native bf16 only (compute capability 8.0+): is_bf16_supported() also says yes for
        # the emulated bf16 of a T4, which is slow.
        bf16 = torch.cuda.get_device_capability()[0] >= 8
        defaults = {"bf16": str(bf16).lower(), "fp16": str(not bf16).lower()}
    if given & {"bf16", "fp16"}:
        defaults = {k: v for k, v in defaults.items() if k not in ("bf16", "fp16")}
    return [
        arg for key, value in defaults.items() if key not in given for arg in (f"--{key}", value)
    ]


def parse(argv: list[str] | None = None) -> tuple[ScriptArguments, Any]:
    from trl import SFTConfig, TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = TrlParser((ScriptArguments, SFTConfig))
    script_args, training_args = parser.parse_args_and_config(hardware_defaults(argv) + argv)
    return script_args, training_args


def choose_attention(training_args: Any, requested: str) -> tuple[Any, str]:
    """(torch dtype, attention implementation) for the precision already chosen."""
    import importlib.util

    import torch

    if (training_args.bf16 or training_args.fp16) and not torch.cuda.is_available():
        raise SystemExit("error: --bf16/--fp16 need a GPU; on a CPU the script trains in fp32")
    dtype = (
        torch.bfloat16
        if training_args.bf16
        else torch.float16
        if training_args.fp16
        else torch.float32
    )
    has_flash = importlib.util.find_spec("flash_attn") is not None
    attention = "flash_attention_2" if has_flash and dtype != torch.float32 else "sdpa"
    return dtype, attention if requested == "auto" else requested


def check_inputs(script_args: ScriptArguments, training_args: Any) -> None:
    """Fail before loading anything heavy, with the argument that is wrong."""
    if not script_args.model_name_or_path:
        raise SystemExit("error: --model_name_or_path is required (a hub id or a local folder)")
    if not script_args.train_file:
        raise SystemExit("error: --train_file is required (chat JSONL with a 'messages' column)")
    for name in ("train_file", "eval_file"):
        value = getattr(script_args, name)
        if value and not Path(value).exists():
            raise SystemExit(f"error: --{name} {value}: no such file")
    if training_args.eval_strategy != "no" and not script_args.eval_file:
        training_args.eval_strategy = "no"
    output = Path(script_args.model_output)
    if script_args.write_mlflow_model and output.exists() and any(output.iterdir()):
        raise SystemExit(
            f"error: --model_output {output} is not empty; MLflow will not overwrite a model"
        )


def mlflow_callback() -> Any:
    """Log curated parameters and metrics to the active MLflow run, from the main process only."""
    import mlflow
    from transformers import TrainerCallback

    class CuratedMlflow(TrainerCallback):  # type: ignore[misc]  # transformers is untyped here
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                params = {name: getattr(args, name, None) for name in LOGGED_PARAMETERS}
                params["world_size"] = args.world_size
                mlflow.log_params({k: str(v) for k, v in params.items()})

        def on_log(
            self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
        ) -> None:
            if state.is_world_process_zero and logs:
                metrics = {k: float(v) for k, v in logs.items() if k in LOGGED_METRICS}
                if metrics:
                    mlflow.log_metrics(metrics, step=state.global_step)

    return CuratedMlflow()


def save_mlflow_model(model: Any, tokenizer: Any, path: Path) -> None:
    """Write the fine-tuned model as an MLflow transformers model (MLmodel included)."""
    import importlib.metadata

    import mlflow

    # Without the local version label (+cpu): it names no wheel an Azure image could install.
    requirements = [
        f"{package}=={importlib.metadata.version(package).split('+')[0]}"
        for package in ("torch", "transformers", "accelerate", "mlflow-skinny")
    ]
    mlflow.transformers.save_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        path=str(path),
        task="text-generation",
        pip_requirements=requirements,
    )


def run_metrics(trainer: Any, runtime: float, attention: str, dtype: Any) -> dict[str, Any]:
    """Throughput and memory of the run, for the logs and the benchmark script."""
    import resource

    import torch

    tokens = max((e.get("num_tokens", 0) for e in trainer.state.log_history), default=0)
    if torch.cuda.is_available():
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:  # ru_maxrss is in KiB on Linux
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "attention": attention,
        "dtype": str(dtype).removeprefix("torch."),
        "packing": trainer.args.packing and trainer.args.packing_strategy,
        "world_size": trainer.args.world_size,
        "steps": trainer.state.global_step,
        "train_runtime_s": runtime,
        "tokens": tokens,
        "tokens_per_second": tokens / runtime if runtime else 0.0,
        "peak_memory_mb": peak_mb,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }


def main(script_args: ScriptArguments, training_args: Any) -> None:
    check_inputs(script_args, training_args)
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    dtype, attention = choose_attention(training_args, script_args.attn_implementation)
    files = {"train": script_args.train_file}
    if script_args.eval_file:
        files["eval"] = script_args.eval_file
    data = load_dataset("json", data_files=files)
    # Keep only the conversation: extra columns such as ultrachat's `prompt` make TRL
    # treat the data as prompt/completion pairs.
    data = data.select_columns(["messages"])

    tokenizer = AutoTokenizer.from_pretrained(
        script_args.model_name_or_path, trust_remote_code=training_args.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(
        script_args.model_name_or_path,
        dtype=dtype,
        attn_implementation=attention,
        trust_remote_code=training_args.trust_remote_code,
    )
    if training_args.gradient_checkpointing:
        model.config.use_cache = False

    callbacks = [mlflow_callback()] if os.environ.get("MLFLOW_TRACKING_URI") else []
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=data["train"],
        eval_dataset=data.get("eval"),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    result = trainer.train()
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        output_dir = Path(training_args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        trainer.state.save_to_json(str(output_dir / "trainer_state.json"))
        metrics = run_metrics(trainer, result.metrics["train_runtime"], attention, dtype)
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(json.dumps(metrics), file=sys.stderr)
        if script_args.write_mlflow_model:
            model = trainer.accelerator.unwrap_model(trainer.model)
            model.config.use_cache = True
            save_mlflow_model(model, tokenizer, Path(script_args.model_output))
    trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(*parse())
