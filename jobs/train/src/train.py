"""Fine-tune a Phi model with TRL's SFTTrainer, or preference-tune it with TRL's DPOTrainer,
and write it as an MLflow model.

This folder is what Azure ML uploads as the job's code, so the script depends on nothing
else in the repository. Hyperparameters come from `hyperparameters.yaml` next to it (SFT)
or `hyperparameters-dpo.yaml` (DPO); any TRL or Trainer argument on the command line
overrides them, in TRL's own spelling (`--beta 0.1 --loss_type sigmoid` for DPO).

Launch:

    # one process (CPU or one GPU)
    python train.py --config hyperparameters.yaml \
        --train_file data/train_data.jsonl --eval_file data/eval_data.jsonl \
        --model_output outputs/model

    # DPO on preference pairs (prompt, chosen, rejected), from a chat model: a hub id, a
    # local folder, or the MLflow model an SFT run wrote
    python train.py --trainer dpo --config hyperparameters-dpo.yaml \
        --model_name_or_path outputs/sft-model \
        --train_file data/preference_train.jsonl --eval_file data/preference_eval.jsonl \
        --model_output outputs/model

    # several GPUs on one node; Azure ML starts this for you with `phi finetune submit --gpus-per-node 4`
    torchrun --nproc_per_node 4 train.py --config hyperparameters.yaml ...

    # from the repository: the same script, locally
    phi train --local --model PATH_OR_ID --train-file F --eval-file F --output-dir DIR

Precision and attention follow the hardware unless given: bf16 (fp16 without bf16 support)
with flash attention when installed, else SDPA, on a GPU; fp32 with SDPA on a CPU.

LoRA and QLoRA are TRL's own options (`--use_peft --lora_r 16 --lora_target_modules
all-linear`, `--load_in_4bit`); the MLflow model written is always the full model, the
adapter merged into the base, so it serves like a full fine-tune. The adapter is kept in
`<output_dir>/adapter`. FSDP is the Trainer's (`--fsdp --fsdp_config fsdp.json`). DPO's
reference model is the starting model: with LoRA, the base with the adapter switched off
(no second copy); without, a second copy that TRL loads from the same folder.

`--model_name_or_path` may name an MLflow model folder (one holding `MLmodel`, as this
script writes it, or the catalog pipeline's `hftransformersv2` layout): its weights and
tokenizer are read from their folders inside it, so DPO can start from an SFT run's model.

Parameters and metrics go to MLflow when $MLFLOW_TRACKING_URI is set: Azure ML sets it in a
job, `phi train --local` points it at `<output-dir>/mlruns`. They record the trainer, and for
DPO the reward accuracies and margins TRL logs (`rewards/accuracies`, `rewards/margins`, and
their `eval_` counterparts with an eval file). The run ends on two lines: the loss (first and
last logged; the eval loss first, last and best; for DPO the last reward accuracy and margin)
and `model: DIR`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bitsandbytes (QLoRA) warns at import, on CPUs with AVX512-BF16, that an optional kernel from
# the Hugging Face hub is not installed; its built-in fallback is the one this script wants.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
# peft 0.21's PeftModel and TRL 1.16's model utilities still call transformers 5's deprecated
# model methods (`is_gradient_checkpointing`, `gradient_checkpointing_enable`/`_disable`): a
# FutureWarning on every LoRA or DPO run that only they can act on. (The Trainer argument's
# own warning, for a user who writes --gradient_checkpointing, stays.)
warnings.filterwarnings(
    "ignore",
    message=r"`(is_gradient_checkpointing|gradient_checkpointing_(en|dis)able)` is deprecated",
    category=FutureWarning,
)

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
    "activation_checkpointing",
    "bf16",
    "fp16",
    "seed",
    "beta",
    "loss_type",
)
"""Each one the run's config has (SFT has no beta, DPO no packing); and `trainer`, sft or dpo."""
REWARDS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")
"""What DPOTrainer logs of its implicit reward, beta x log(policy / reference) of an answer:
how often the chosen answer's beats the rejected one's, by how much on average, and each."""
LOGGED_METRICS = (
    "loss",
    "eval_loss",
    "learning_rate",
    "grad_norm",
    "epoch",
    "train_loss",
    *REWARDS,
    *(f"eval_{name}" for name in REWARDS),
)

TRAINERS = {
    "sft": ('chat JSONL, one {"messages": [...]} conversation per line', ("messages",)),
    "dpo": (
        'preference JSONL, one {"prompt": [...], "chosen": [...], "rejected": [...]} pair per line',
        ("prompt", "chosen", "rejected"),
    ),
}
"""Each trainer (`--trainer`): the data it reads, in words, and the columns it keeps."""
DPO_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)
"""DPOConfig's `loss_type` values (TRL 1.16's own list, in its help; DPOTrainer accepts any
string and fails on an unknown one only at the first training step)."""
MLFLOW_LAYOUTS = {
    "transformers": ("model", "components/tokenizer"),
    "hftransformersv2": ("data/model", "data/tokenizer"),
    "hftransformers": ("data/model", "data/tokenizer"),
}
"""Per MLflow flavor, the folders of the weights and the tokenizer inside an MLflow model:
what this script writes (mlflow.transformers), and what the catalog pipeline writes
(jobs/score/score.py reads the same layouts; a test holds the two to each other)."""


@dataclass
class ScriptArguments:
    """The script's own arguments; the model's (`--model_name_or_path`, `--attn_implementation`,
    LoRA and quantization) are TRL's ModelConfig, the training's TRL's SFTConfig or, with
    `--trainer dpo`, its DPOConfig."""

    trainer: str = field(
        default="sft",
        metadata={
            "help": "sft: supervised fine-tuning on chat data (SFTTrainer); dpo: direct preference "
            "optimization on chosen/rejected pairs (DPOTrainer).",
            "choices": list(TRAINERS),
        },
    )
    train_file: str = field(
        default="", metadata={"help": "Training data: chat JSONL (sft) or preference JSONL (dpo)."}
    )
    eval_file: str = field(
        default="", metadata={"help": "Evaluation data, as the training data (optional)."}
    )
    model_output: str = field(
        default="outputs/model", metadata={"help": "Folder the MLflow model is written to."}
    )
    write_mlflow_model: bool = field(
        default=True, metadata={"help": "Write the MLflow model (false for throughput benchmarks)."}
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


REFUSED_ARGUMENTS = {"dtype": "precision follows --bf16/--fp16 (or the hardware)"}
"""ModelConfig's arguments the script decides itself, with the reason (`phi` refuses them too)."""


def make_parser(trainer: str = "sft") -> Any:
    """TRL's parser over every argument the script takes with `trainer` (SFTConfig's or
    DPOConfig's training arguments); `phi` checks arguments with it."""
    from trl import DPOConfig, ModelConfig, SFTConfig, TrlParser

    config = {"sft": SFTConfig, "dpo": DPOConfig}[trainer]
    return TrlParser((ScriptArguments, config, ModelConfig))


def trainer_of(argv: list[str]) -> str:
    """The `--trainer` the command line names (default sft), before the parser, which
    depends on it, exists."""
    value = "sft"
    for index, arg in enumerate(argv):
        if arg == "--trainer" and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--trainer="):
            value = arg.split("=", 1)[1]
    if value not in TRAINERS:
        raise SystemExit(f"error: --trainer {value}: must be one of {', '.join(TRAINERS)}")
    return value


def config_path(argv: list[str]) -> str | None:
    return argv[argv.index("--config") + 1] if "--config" in argv else None


def takes(trainer: str, option: str) -> bool:
    """Whether `trainer`'s parser knows `option` (`--packing`)."""
    return any(option in action.option_strings for action in make_parser(trainer)._actions)


def parse(argv: list[str] | None = None) -> tuple[ScriptArguments, Any, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    for arg in argv:
        name = arg.removeprefix("--").split("=")[0]
        if arg.startswith("--") and name in REFUSED_ARGUMENTS:
            raise SystemExit(f"error: --{name}: {REFUSED_ARGUMENTS[name]}")
    trainer = trainer_of(argv)
    script_args, training_args, model_args, from_config, given = make_parser(
        trainer
    ).parse_args_and_config(
        hardware_defaults(argv) + argv,
        return_remaining_strings=True,
        separate_remaining_strings=True,
    )
    for where, unknown in (("", given), (f"--config {config_path(argv)}: ", from_config)):
        names = [item for item in unknown if item.startswith("--")]
        if names:
            other = [t for t in TRAINERS if t != trainer and takes(t, names[0])]
            hint = f" (an argument of --trainer {other[0]})" if other else ""
            raise SystemExit(
                f"error: {where}{', '.join(names)}: not an argument of --trainer {trainer}{hint}"
            )
    return script_args, training_args, model_args


def choose_attention(training_args: Any, requested: str | None) -> tuple[Any, str]:
    """(torch dtype, attention implementation) for the precision already chosen; an unset or
    `auto` attention follows the hardware."""
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
    return dtype, attention if requested in (None, "auto") else requested


def quantization_option(model_args: Any) -> str | None:
    """The option that quantizes the base model, if one was given."""
    if model_args.load_in_4bit:
        return "--load_in_4bit"
    return "--load_in_8bit" if model_args.load_in_8bit else None


def incompatible_options(model_args: Any, fsdp: bool) -> str | None:
    """Why the model options cannot go together, or None. `model_args` is TRL's ModelConfig
    or any object with its fields: `phi` checks a job's arguments with this before it is
    submitted."""
    quantized = quantization_option(model_args)
    if quantized and not model_args.use_peft:
        return f"{quantized} freezes the base model: add --use_peft (LoRA adapters on it)"
    if quantized and fsdp:
        return f"{quantized} with --fsdp is not supported by this script"
    return None


def trainer_problem(training_args: Any, trainer: str) -> str | None:
    """Why the trainer's own arguments are nonsense, or None. `training_args` is its
    SFTConfig or DPOConfig, or any object with their fields (`phi` checks a job's arguments
    with this before it is submitted)."""
    if trainer != "dpo":
        return None
    beta = float(training_args.beta)
    # The DPO loss is -log sigmoid(beta x (the chosen answer's log-ratio - the rejected
    # one's)): at 0 the preference drops out, below 0 it is reversed; IPO divides by it.
    if not math.isfinite(beta) or beta <= 0:
        return (
            f"--beta {beta:g}: must be above 0 (it scales the preference margin against "
            "staying near the starting model; TRL defaults to 0.1, typically 0.1 to 0.5)"
        )
    losses = training_args.loss_type
    unknown = [
        n for n in ([losses] if isinstance(losses, str) else losses) if n not in DPO_LOSS_TYPES
    ]
    if unknown:
        return f"--loss_type {unknown[0]}: must be one of {', '.join(DPO_LOSS_TYPES)}"
    return None


def data_problem(path: Path, trainer: str) -> str | None:
    """Why the file cannot be `trainer`'s data, from every line's keys, or None: no rows
    (no pairs to learn from), a line that is not a JSON object, or rows of the other
    trainer's kind. `phi` checks every row with `phi data validate`'s rules before it runs
    or submits this script; this is the script's own guard, for a job started without it."""
    wanted = "preference pairs (prompt, chosen, rejected)" if trainer == "dpo" else "chat rows"
    rows = 0
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError:
                return f"line {number} is not JSON; the file must be JSON Lines of {wanted}"
            if not isinstance(row, dict):
                return f"line {number} is not a JSON object; the file must hold {wanted}"
            rows += 1
            preference = "chosen" in row or "rejected" in row
            if trainer == "dpo" and not preference:
                return (
                    f"line {number} is a chat row, not a preference pair: --trainer dpo "
                    "trains on prompt/chosen/rejected rows (phi data prepare --task preference)"
                )
            if trainer == "sft" and preference:
                return (
                    f"line {number} is a preference pair (chosen, rejected), not a chat row: "
                    "train on pairs with --trainer dpo"
                )
    if not rows:
        return f"the file is empty: it holds no {wanted}"
    return None


def model_folders(model: str) -> tuple[str, str]:
    """(weights, tokenizer) of `model`: the folders inside an MLflow model folder, by its
    flavor (MLFLOW_LAYOUTS); a hub id or a plain model folder is both."""
    mlmodel = Path(model) / "MLmodel"
    if not mlmodel.is_file():
        return model, model
    import yaml

    flavors = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors") or {}
    for flavor, (weights, tokenizer) in MLFLOW_LAYOUTS.items():
        if flavor in flavors:
            return str(Path(model) / weights), str(Path(model) / tokenizer)
    raise ValueError(
        f"an MLflow model of flavor {', '.join(flavors) or 'none'}; this script reads "
        f"{', '.join(MLFLOW_LAYOUTS)}"
    )


def model_problem(model: str) -> str | None:
    """Why `model` cannot be loaded as a starting model, for an MLflow model folder whose
    weights are not where its flavor puts them; None otherwise."""
    try:
        weights, _ = model_folders(model)
    except ValueError as error:
        return str(error)
    if weights != model and not (Path(weights) / "config.json").is_file():
        return f"an MLflow model without the model it should hold in {weights} (no config.json)"
    return None


def check_inputs(script_args: ScriptArguments, training_args: Any, model_args: Any) -> None:
    """Fail before loading anything heavy, with the argument that is wrong."""
    import importlib.util

    import torch

    if not model_args.model_name_or_path:
        raise SystemExit("error: --model_name_or_path is required (a hub id or a local folder)")
    problem = incompatible_options(model_args, fsdp=bool(training_args.fsdp))
    if problem:
        raise SystemExit(f"error: {problem}")
    quantized = quantization_option(model_args)
    needs = {
        "peft": model_args.use_peft and "--use_peft",
        "bitsandbytes": quantized,
        "liger_kernel": training_args.use_liger_kernel and "--use_liger_kernel",
    }
    for package, option in needs.items():
        if option and importlib.util.find_spec(package) is None:
            raise SystemExit(f"error: {option} needs the package {package}, not installed here")
    if not torch.cuda.is_available():
        # Accelerate shards only across GPUs: on a CPU, --fsdp would silently be plain DDP.
        for option, given in (
            ("--use_liger_kernel", training_args.use_liger_kernel),
            ("--fsdp", training_args.fsdp),
        ):
            if given:
                raise SystemExit(f"error: {option} needs CUDA GPUs; this machine has none")
    problem = trainer_problem(training_args, script_args.trainer)
    if problem:
        raise SystemExit(f"error: {problem}")
    if not script_args.train_file:
        data = TRAINERS[script_args.trainer][0]
        raise SystemExit(f"error: --train_file is required ({data})")
    for name in ("train_file", "eval_file"):
        value = getattr(script_args, name)
        if value and not Path(value).exists():
            raise SystemExit(f"error: --{name} {value}: no such file")
        if value:
            problem = data_problem(Path(value), script_args.trainer)
            if problem:
                raise SystemExit(f"error: --{name} {value}: {problem}")
    problem = model_problem(model_args.model_name_or_path)
    if problem:
        raise SystemExit(f"error: --model_name_or_path {model_args.model_name_or_path}: {problem}")
    if training_args.eval_strategy != "no" and not script_args.eval_file:
        training_args.eval_strategy = "no"
    output = Path(script_args.model_output)
    if script_args.write_mlflow_model and output.exists() and any(output.iterdir()):
        raise SystemExit(
            f"error: --model_output {output} is not empty; MLflow will not overwrite a model"
        )


def mlflow_callback(trainer: str) -> Any:
    """Log curated parameters and metrics to the active MLflow run, from the main process only."""
    import mlflow
    from transformers import TrainerCallback

    class CuratedMlflow(TrainerCallback):  # type: ignore[misc]  # transformers is untyped here
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                params = {
                    name: getattr(args, name) for name in LOGGED_PARAMETERS if hasattr(args, name)
                }
                params["trainer"] = trainer
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


def base_model_card(base: str) -> Any:
    """The base model's card for MLflow to keep with the model, or None for a hub id (MLflow
    fetches the hub's card and license itself). A local folder's card is its README.md, or,
    without one, a card that says so: given no card, MLflow asks the hub for the model's
    `name_or_path`, which for a local folder is a path, not a repository id (a warning, and
    with a relative path a minute of retries)."""
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(base)
    if not folder.is_dir():
        return None
    readme = folder / "README.md"
    if readme.is_file():
        return ModelCard.load(readme, ignore_metadata_errors=True)
    # An MLflow model (an SFT run's, for DPO) keeps its card's text and metadata apart.
    text, data = folder / "model_card.md", folder / "model_card_data.yaml"
    if text.is_file():
        metadata = data.read_text(encoding="utf-8") if data.is_file() else ""
        return ModelCard(f"---\n{metadata.strip()}\n---\n{text.read_text(encoding='utf-8')}")
    return ModelCard(
        f"---\n{ModelCardData(license='unknown').to_yaml()}\n---\n"
        f"Fine-tuned from the local model folder {folder.resolve()}, which has no model card "
        "(README.md) and so no declared license.\n"
    )


def write_local_license(base: Path, path: Path) -> None:
    """A local base's license in the MLflow model: the folder's own license file, or a note
    that it has none (MLflow's fallback text would send the reader to the hub for a path)."""
    found = sorted(p for p in base.glob("LICENSE*") if p.is_file())
    text = (
        found[0].read_text(encoding="utf-8", errors="replace")
        if found
        else f"The base model, the local folder {base.resolve()}, came with no license file.\n"
    )
    (path / "LICENSE.txt").write_text(text, encoding="utf-8")


def save_mlflow_model(model: Any, tokenizer: Any, path: Path, base: str) -> None:
    """Write the fine-tuned model as an MLflow transformers model (MLmodel included), recorded
    as a fine-tune of `base` (the hub id or local folder it started from)."""
    import importlib.metadata

    import mlflow

    # Without the local version label (+cpu): it names no wheel an Azure image could install.
    requirements = [
        f"{package}=={importlib.metadata.version(package).split('+')[0]}"
        for package in ("torch", "transformers", "accelerate", "mlflow-skinny")
    ]
    # The model's own name is where its weights were last loaded from: the temporary folder
    # an FSDP run gathers into, for one. MLflow records it as the source model.
    model.config._name_or_path = base
    model.name_or_path = base
    mlflow.transformers.save_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        path=str(path),
        task="text-generation",
        pip_requirements=requirements,
        model_card=base_model_card(base),
    )
    if Path(base).is_dir():
        write_local_license(Path(base), path)


def loss_summary(log_history: list[dict[str, Any]]) -> str:
    """One line: the training loss first and last logged, the eval loss first, last and best;
    for DPO, the last reward accuracy and margin (the eval ones with an eval file)."""
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    evals = [
        (entry["eval_loss"], entry.get("epoch")) for entry in log_history if "eval_loss" in entry
    ]
    parts = []
    if losses:
        parts.append(
            f"loss: first {losses[0]:.4f}, last {losses[-1]:.4f} ({len(losses)} logged steps)"
        )
    else:
        parts.append("loss: none logged (fewer steps than --logging_steps)")
    if evals:
        best, epoch = min(evals, key=lambda pair: pair[0])
        at = f" (epoch {epoch:g})" if epoch is not None else ""
        parts.append(
            f"eval loss: first {evals[0][0]:.4f}, last {evals[-1][0]:.4f}, best {best:.4f}{at}"
        )
    rewards = last_rewards(log_history)
    for prefix, label in (("", "reward"), ("eval_", "eval reward")):
        accuracy, margin = (rewards.get(f"{prefix}rewards/{n}") for n in ("accuracies", "margins"))
        if accuracy is not None and margin is not None:
            parts.append(f"{label} accuracy {accuracy:.2f}, margin {margin:.4f}")
    return "; ".join(parts)


def last_rewards(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The last logged value of each of DPO's reward metrics (REWARDS, and eval_ REWARDS);
    empty for SFT."""
    names = [*REWARDS, *(f"eval_{name}" for name in REWARDS)]
    return {name: entry[name] for entry in log_history for name in names if name in entry}


def levers(trainer: Any, model_args: Any) -> dict[str, Any]:
    """The speed and memory choices the run was made with, as recorded in metrics.json."""
    args = trainer.args
    quantization = (
        "4bit" if model_args.load_in_4bit else "8bit" if model_args.load_in_8bit else None
    )
    return {
        "liger_kernel": bool(args.use_liger_kernel),
        # SFTTrainer turns padding-free on for best-fit-decreasing packing by itself.
        "padding_free": bool(getattr(trainer, "padding_free", args.padding_free)),
        # DPO has no packing: each pair is one chosen and one rejected sequence.
        "packing": getattr(args, "packing", False) and args.packing_strategy,
        # Under FSDP, activations are checkpointed by FSDP itself (fsdp.json), not the Trainer.
        "activation_checkpointing": bool(args.activation_checkpointing)
        or (
            trainer.is_fsdp_enabled and bool(args.fsdp_plugin_args.get("activation_checkpointing"))
        ),
        "fsdp": bool(trainer.is_fsdp_enabled),
        "peft": {
            "r": model_args.lora_r,
            "alpha": model_args.lora_alpha,
            "target_modules": model_args.lora_target_modules,
        }
        if model_args.use_peft
        else None,
        "quantization": quantization,
        **({"reference_model": reference_model(trainer)} if hasattr(trainer, "ref_model") else {}),
    }


def reference_model(trainer: Any) -> str:
    """Where DPO's reference log-probabilities come from: `adapter-off` (LoRA: the same
    model with its adapter switched off, no second copy), `precomputed` (once, before
    training) or `copy` (a second copy of the starting model held beside it)."""
    if trainer.ref_model is not None:
        return "copy"
    return "precomputed" if trainer.args.precompute_ref_log_probs else "adapter-off"


def run_metrics(
    trainer: Any,
    runtime: float,
    attention: str,
    dtype: Any,
    run_levers: dict[str, Any],
    name: str = "sft",
) -> dict[str, Any]:
    """The trainer, throughput, memory and levers of the run, and for DPO the last reward
    accuracies and margins, for the logs and the benchmark script."""
    import resource

    import torch

    # SFTTrainer's running count covers every step; its logs only those up to the last log.
    logged = max((e.get("num_tokens", 0) for e in trainer.state.log_history), default=0)
    tokens = max(logged, getattr(trainer, "_total_train_tokens", 0))
    if torch.cuda.is_available():
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:  # ru_maxrss is in KiB on Linux
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if hasattr(trainer.model, "get_nb_trainable_parameters"):  # PEFT: counts 4-bit packing right
        trainable, total = trainer.model.get_nb_trainable_parameters()
    else:
        parameters = list(trainer.model.parameters())
        total = sum(p.numel() for p in parameters)
        trainable = sum(p.numel() for p in parameters if p.requires_grad)
    return {
        "trainer": name,
        "attention": attention,
        "dtype": str(dtype).removeprefix("torch."),
        **run_levers,
        "world_size": trainer.args.world_size,
        "steps": trainer.state.global_step,
        "train_runtime_s": runtime,
        "tokens": tokens,
        "tokens_per_second": tokens / runtime if runtime else 0.0,
        "peak_memory_mb": peak_mb,
        "parameters": total,
        "trainable_parameters": trainable,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        **last_rewards(trainer.state.log_history),
    }


def load_model(model_args: Any, training_args: Any, dtype: Any, attention: str) -> Any:
    """The base model: in `dtype`, or quantized by bitsandbytes for QLoRA."""
    import dataclasses

    import torch
    from accelerate import PartialState
    from accelerate.utils import enable_fsdp_ram_efficient_loading
    from transformers import AutoModelForCausalLM
    from trl import get_quantization_config

    # QLoRA computes in the run's dtype.
    dtype_name = str(dtype).removeprefix("torch.")
    quantization = get_quantization_config(dataclasses.replace(model_args, dtype=dtype_name))
    # bitsandbytes places the whole quantized model on each process's own device.
    device = PartialState().local_process_index if torch.cuda.is_available() else "cpu"
    if training_args.fsdp and training_args.fsdp_config.get("cpu_ram_efficient_loading"):
        # Only the first process reads the weights; FSDP broadcasts them to the others.
        enable_fsdp_ram_efficient_loading()
    return AutoModelForCausalLM.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        dtype=dtype,
        attn_implementation=attention,
        trust_remote_code=training_args.trust_remote_code,
        quantization_config=quantization,
        device_map={"": device} if quantization is not None else None,
    )


def final_model(trainer: Any, model_args: Any, dtype: Any, attention: str) -> Any:
    """The full fine-tuned model to serve, on the main process; every process must call it.

    A LoRA run keeps its adapter in `<output_dir>/adapter` and merges it into a freshly
    loaded, unquantized base: QLoRA's 4-bit weights are not what is served. An FSDP run
    gathers the full weights through the Trainer's own save, into a temporary folder
    outside the job's outputs, and loads them back.
    """
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM

    load = {
        "dtype": dtype,
        "attn_implementation": attention,
        "trust_remote_code": trainer.args.trust_remote_code,
    }
    if model_args.use_peft:
        adapter = Path(trainer.args.output_dir) / "adapter"
        trainer.save_model(str(adapter))
        if not trainer.is_world_process_zero():
            return None
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(
            model_args.model_name_or_path, revision=model_args.model_revision, **load
        )
        return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    if trainer.is_fsdp_enabled:
        gathered = Path(tempfile.mkdtemp(prefix="finetune-phi-fsdp-"))
        try:
            trainer.save_model(str(gathered))
            if not trainer.is_world_process_zero():
                return None
            return AutoModelForCausalLM.from_pretrained(str(gathered), **load)
        finally:
            shutil.rmtree(gathered, ignore_errors=True)
    if not trainer.is_world_process_zero():
        return None
    return trainer.accelerator.unwrap_model(trainer.model)


def log_run_metrics(metrics: dict[str, Any], run_levers: dict[str, Any]) -> None:
    """The run's throughput and memory as MLflow metrics, its levers as `lever.*` parameters."""
    import mlflow

    numbers = ("tokens_per_second", "peak_memory_mb", "train_runtime_s", "trainable_parameters")
    mlflow.log_metrics({name: float(metrics[name]) for name in numbers})
    # DPO's last reward accuracies and margins, as `final.<name>` beside their curves.
    rewards = {n: v for n, v in metrics.items() if n.startswith(("rewards/", "eval_rewards/"))}
    if rewards:
        mlflow.log_metrics({f"final.{name}": float(value) for name, value in rewards.items()})
    mlflow.log_params({f"lever.{name}": json.dumps(value) for name, value in run_levers.items()})


def forged_turns(data: Any, files: dict[str, str], tokenizer: Any) -> list[str]:
    """Every message whose content holds one of the tokenizer's markers (`<|end|>`,
    `<|assistant|>`...): the chat template would read it as a turn of its own. The messages
    are a chat row's `messages`, or a preference pair's `prompt`, `chosen` and `rejected`."""
    ids = set(tokenizer.added_tokens_decoder) | set(tokenizer.all_special_ids)
    markers = [marker for marker in tokenizer.convert_ids_to_tokens(sorted(ids)) if marker]
    problems = []
    for split, rows in data.items():
        columns = [
            c for c in ("messages", "prompt", "chosen", "rejected") if c in rows.column_names
        ]
        for row, values in enumerate(zip(*(rows[c] for c in columns), strict=True), start=1):
            for column, messages in zip(columns, values, strict=True):
                for index, message in enumerate(messages):
                    found = next((m for m in markers if m in message["content"]), None)
                    if found:
                        problems.append(
                            f"{files[split]}: row {row}: {column}[{index}] holds the chat "
                            f"template's marker {found!r}"
                        )
    return problems


def explicit_prompt(row: dict[str, Any]) -> dict[str, Any]:
    """A preference pair with its prompt given once: TRL's implicit-prompt spelling (chosen
    and rejected as whole conversations sharing all but their last message) made explicit,
    so one file may mix both spellings."""
    if row.get("prompt"):
        return {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]}
    return {
        "prompt": row["chosen"][:-1],
        "chosen": row["chosen"][-1:],
        "rejected": row["rejected"][-1:],
    }


def load_data(script_args: ScriptArguments) -> tuple[Any, dict[str, str]]:
    """The data files as datasets keyed train (and eval), holding only the trainer's columns:
    extra columns such as ultrachat's `prompt` make TRL treat chat data as prompt/completion
    pairs, and a preference dataset's scores and ids mean nothing to DPO."""
    from datasets import load_dataset

    files = {"train": script_args.train_file}
    if script_args.eval_file:
        files["eval"] = script_args.eval_file
    data = load_dataset("json", data_files=files)
    if script_args.trainer == "sft":
        return data.select_columns(list(TRAINERS["sft"][1])), files
    for split in list(data):
        present = set(data[split].column_names)
        rows = data[split].select_columns([c for c in TRAINERS["dpo"][1] if c in present])
        if "prompt" not in present or not all(rows["prompt"]):
            rows = rows.map(explicit_prompt)
        data[split] = rows
    return data, files


def make_trainer(
    script_args: ScriptArguments,
    training_args: Any,
    model_args: Any,
    model: Any,
    tokenizer: Any,
    data: Any,
) -> Any:
    """TRL's SFTTrainer or DPOTrainer on the loaded model. DPO with LoRA takes its reference
    log-probabilities from the same model with the adapter switched off; without LoRA, TRL
    loads a second copy of the starting model as the reference."""
    from trl import DPOTrainer, SFTTrainer, get_peft_config

    tracking = bool(os.environ.get("MLFLOW_TRACKING_URI"))
    common = {
        "model": model,
        "args": training_args,
        "train_dataset": data["train"],
        "eval_dataset": data.get("eval"),
        "processing_class": tokenizer,
        "peft_config": get_peft_config(model_args),
        "callbacks": [mlflow_callback(script_args.trainer)] if tracking else [],
    }
    if script_args.trainer == "dpo":
        return DPOTrainer(ref_model=None, **common)
    return SFTTrainer(**common)


def main(script_args: ScriptArguments, training_args: Any, model_args: Any) -> None:
    check_inputs(script_args, training_args, model_args)
    from transformers import AutoTokenizer

    dtype, attention = choose_attention(training_args, model_args.attn_implementation)
    data, files = load_data(script_args)
    # The starting model as given (a hub id, a folder, an MLflow model), recorded as the
    # fine-tune's source; loaded from its weights' and tokenizer's own folders.
    base = model_args.model_name_or_path
    model_args.model_name_or_path, tokenizer_folder = model_folders(base)

    tokenizer = AutoTokenizer.from_pretrained(
        tokenizer_folder, trust_remote_code=training_args.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.padding_side = "right"
    forged = forged_turns(data, files, tokenizer)
    if forged:
        shown = "\n  ".join(forged[:10])
        raise SystemExit(
            f"error: {len(forged)} message(s) hold a chat-template marker; the model would "
            f"learn forged turns from them (remove them, then train):\n  {shown}"
        )
    model = load_model(model_args, training_args, dtype, attention)
    if training_args.activation_checkpointing:
        model.config.use_cache = False

    trainer = make_trainer(script_args, training_args, model_args, model, tokenizer, data)
    result = trainer.train()
    trainer.accelerator.wait_for_everyone()
    merged = (
        final_model(trainer, model_args, dtype, attention)
        if script_args.write_mlflow_model
        else None
    )
    if trainer.is_world_process_zero():
        output_dir = Path(training_args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        trainer.state.save_to_json(str(output_dir / "trainer_state.json"))
        runtime = result.metrics["train_runtime"]
        run_levers = levers(trainer, model_args)
        metrics = run_metrics(trainer, runtime, attention, dtype, run_levers, script_args.trainer)
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(json.dumps(metrics), file=sys.stderr)
        if os.environ.get("MLFLOW_TRACKING_URI"):
            log_run_metrics(metrics, run_levers)
        if merged is not None:
            merged.config.use_cache = True
            save_mlflow_model(merged, tokenizer, Path(script_args.model_output), base)
        # What happened, last: how the loss moved and where the model went.
        print(loss_summary(trainer.state.log_history), flush=True)
        if merged is not None:
            print(f"model: {Path(script_args.model_output).resolve()}", flush=True)
    trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(*parse())
