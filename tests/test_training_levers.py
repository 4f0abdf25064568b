"""The training script's speed and memory levers: LoRA, QLoRA, FSDP, padding-free packing,
gradient checkpointing, Liger. Each one is recorded, and none changes a number it should not.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from finetune_phi.cli.main import main
from finetune_phi.core.folders import TRAIN_SOURCE
from finetune_phi.data.prepare import SampleSize, prepare
from tests.support import SAMPLE, serving

LORA = ["--use_peft", "--lora_r", "8", "--lora_alpha", "16", "--lora_target_modules", "all-linear"]


def train(model: Path, out: Path, *trl_args: str) -> Path:
    data = prepare(out_dir=out / "data", size=SampleSize(rows=20), seed=1, from_path=SAMPLE)
    code = main(
        [
            "train",
            "--local",
            "--model",
            str(model),
            "--train-file",
            str(data.train),
            "--output-dir",
            str(out / "run"),
            "--num_train_epochs",
            "2",
            "--max_length",
            "128",
            "--learning_rate",
            "1e-2",
            "--logging_steps",
            "1",
            *trl_args,
        ]
    )
    assert code == 0
    return out / "run"


@pytest.fixture(scope="module")
def lora_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lora")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"file:{out / 'mlruns'}")
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        return train(tiny_model, out, *LORA)


def logits(model: Any, input_ids: Any) -> Any:
    import torch

    with torch.no_grad():
        return model.eval()(input_ids).logits


@pytest.mark.slow
def test_lora_writes_the_merged_model_whose_outputs_are_the_adapters(
    tiny_model: Path, lora_run: Path
) -> None:
    import mlflow
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    served = mlflow.transformers.load_model(str(lora_run / "model"), return_type="components")
    assert type(served["model"]).__name__ == "Phi3ForCausalLM"  # a plain model, no adapter
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    input_ids = torch.randint(5, 500, (2, 24), generator=torch.Generator().manual_seed(0))
    before = logits(base, input_ids)
    adapted = PeftModel.from_pretrained(base, str(lora_run / "checkpoints" / "adapter"))
    merged = logits(served["model"], input_ids)
    torch.testing.assert_close(merged, logits(adapted, input_ids), atol=1e-5, rtol=1e-5)
    assert (merged - before).abs().max() > 1e-2, "the adapter learned nothing"


@pytest.mark.slow
def test_lora_run_records_its_levers_in_metrics_and_mlflow(
    lora_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    metrics = json.loads((lora_run / "checkpoints" / "metrics.json").read_text())
    assert metrics["peft"] == {"r": 8, "alpha": 16, "target_modules": "all-linear"}
    assert 0 < metrics["trainable_parameters"] < metrics["parameters"] / 5
    assert metrics["quantization"] is None
    assert metrics["padding_free"] is True  # best-fit packing turns it on
    assert metrics["liger_kernel"] is False
    assert metrics["fsdp"] is False
    assert metrics["tokens"] > 0
    # A client of its own: mlflow.set_tracking_uri would leak into later tests' processes.
    client = mlflow.MlflowClient(tracking_uri=f"file:{lora_run.parent / 'mlruns'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiment_ids=experiments)
    assert json.loads(run.data.params["lever.peft"])["r"] == 8
    assert run.data.params["lever.padding_free"] == "true"
    assert run.data.metrics["tokens_per_second"] == pytest.approx(metrics["tokens_per_second"])
    assert run.data.metrics["trainable_parameters"] == metrics["trainable_parameters"]


@pytest.mark.slow
def test_lora_model_serves_through_the_unchanged_scoring_path(lora_run: Path) -> None:
    with serving(lora_run / "model") as url:
        body = {"input_data": {"input_string": [{"role": "user", "content": "Hello?"}]}}
        response = requests.post(f"{url}/score", json=body, timeout=60)
    assert response.status_code == 200
    assert isinstance(response.json()["output"], str)


@pytest.mark.slow
def test_qlora_trains_a_4bit_base_and_serves_a_full_precision_merge(
    tiny_model: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """bitsandbytes' 4-bit layers run on a CPU too (its CPU backend), so QLoRA runs here,
    without a library's warning on the way."""
    run = train(tiny_model, tmp_path, *LORA, "--load_in_4bit")
    assert "Warning:" not in capfd.readouterr().err
    metrics = json.loads((run / "checkpoints" / "metrics.json").read_text())
    assert metrics["quantization"] == "4bit"
    config = json.loads(next((run / "model").rglob("config.json")).read_text())
    assert "quantization_config" not in config, "the served model is the merged full model"
    assert config["architectures"] == ["Phi3ForCausalLM"]


def refused(
    model: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], *trl_args: str
) -> tuple[int, str]:
    """`phi train --local` with `trl_args` into tmp_path/out: its exit code and stderr."""
    sample = prepare(out_dir=tmp_path, size=SampleSize(rows=10), seed=1, from_path=SAMPLE)
    code = main(
        [
            "train",
            "--local",
            "--model",
            str(model),
            "--train-file",
            str(sample.train),
            "--output-dir",
            str(tmp_path / "out"),
            *trl_args,
        ]
    )
    return code, capfd.readouterr().err


# phi refuses what no machine could run (exit 2) before starting the script; the script
# refuses, before loading anything, what this machine cannot run (exit 1).
@pytest.mark.parametrize(
    ("trl_args", "code", "message"),
    [
        (["--load_in_4bit"], 2, "--load_in_4bit freezes the base model: add --use_peft"),
        (
            ["--use_peft", "--load_in_8bit", "--gpus-per-node", "2", "--fsdp"],
            2,
            "with --fsdp is not supported",
        ),
        (["--dtype", "bfloat16"], 2, "--dtype: precision follows --bf16/--fp16"),
        (["--use_liger_kernel", "true"], 1, "--use_liger_kernel needs CUDA GPUs"),
        # torchrun starts two ranks before the script refuses
        pytest.param(
            ["--gpus-per-node", "2", "--fsdp"], 1, "--fsdp needs CUDA GPUs", marks=pytest.mark.slow
        ),
    ],
)
def test_a_lever_that_cannot_be_pulled_is_refused_before_loading(
    tiny_model: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    trl_args: list[str],
    code: int,
    message: str,
) -> None:
    import torch

    if code == 1 and torch.cuda.is_available():
        pytest.skip("this machine has the GPU the lever needs")
    if "--use_liger_kernel" in trl_args:
        pytest.importorskip("liger_kernel", reason="liger-kernel is in the GPU environment only")
    exit_code, error = refused(tiny_model, tmp_path, capfd, *trl_args)
    assert exit_code == code
    assert message in error
    assert not (tmp_path / "out").exists()


def test_liger_absent_is_named_not_a_traceback(
    tiny_model: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    if importlib.util.find_spec("liger_kernel") is not None:
        pytest.skip("liger-kernel is installed here")
    code, error = refused(tiny_model, tmp_path, capfd, "--use_liger_kernel", "true")
    assert code == 1
    assert "--use_liger_kernel needs the package liger_kernel" in error


# --- parity: the same numbers with and without a lever, on a fixed batch ---


@pytest.fixture(scope="module")
def fixed_batch(tiny_model: Path) -> tuple[Any, list[list[int]]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    # Three conversations of different lengths, so that padding (or its absence) matters.
    by_length: dict[int, list[int]] = {}
    for line in SAMPLE.read_text().splitlines():
        messages = json.loads(line)["messages"]
        ids = list(tokenizer.apply_chat_template(messages, return_dict=True)["input_ids"])
        by_length.setdefault(len(ids), ids)
    sequences = list(by_length.values())[:3]
    assert len(sequences) == 3
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    return model, sequences


def collate(sequences: list[list[int]], padding_free: bool) -> dict[str, Any]:
    """TRL's own collator, as SFTTrainer batches: padded, or flattened with position ids."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=padding_free)
    batch: dict[str, Any] = collator([{"input_ids": s} for s in sequences])
    return batch


def test_padding_free_packing_gives_the_padded_batchs_loss(
    fixed_batch: tuple[Any, list[list[int]]],
) -> None:
    import torch

    model, sequences = fixed_batch
    padded = collate(sequences, padding_free=False)
    flat = collate(sequences, padding_free=True)
    assert "attention_mask" not in flat
    assert flat["input_ids"].shape[0] == 1
    with torch.no_grad():
        # use_cache=False, as the trainers run: with a cache, transformers skips detecting
        # packed sequences from position_ids and lets them attend to each other.
        padded_loss = model.train()(**padded, use_cache=False).loss
        flat_loss = model(
            input_ids=flat["input_ids"],
            position_ids=flat["position_ids"],
            labels=flat["labels"],
            use_cache=False,
        ).loss
    torch.testing.assert_close(flat_loss, padded_loss, atol=1e-5, rtol=1e-5)


def test_activation_checkpointing_changes_neither_loss_nor_gradients(
    fixed_batch: tuple[Any, list[list[int]]],
) -> None:
    import torch

    model, sequences = fixed_batch
    batch = collate(sequences, padding_free=False)

    def loss_and_grads(checkpointing: bool) -> tuple[Any, list[Any]]:
        model.train()
        if checkpointing:
            model.activation_checkpointing_enable()
        else:
            model.activation_checkpointing_disable()
        model.zero_grad()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    plain_loss, plain_grads = loss_and_grads(False)
    saved_loss, saved_grads = loss_and_grads(True)
    model.activation_checkpointing_disable()
    torch.testing.assert_close(saved_loss, plain_loss)
    for saved, plain in zip(saved_grads, plain_grads, strict=True):
        torch.testing.assert_close(saved, plain, atol=1e-6, rtol=1e-5)


def test_liger_kernels_give_the_same_loss(fixed_batch: tuple[Any, list[list[int]]]) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("Liger's Triton kernels run on CUDA GPUs only")
    pytest.importorskip("liger_kernel", reason="liger-kernel is in the GPU environment only")
    # What the Trainer applies for --use_liger_kernel, on a copy: it patches the instance.
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    model, sequences = fixed_batch
    batch = {k: v.cuda() for k, v in collate(sequences, padding_free=False).items()}
    model = copy.deepcopy(model).cuda().train()
    with torch.no_grad():
        plain = model(**batch, use_cache=False).loss
        _apply_liger_kernel_to_instance(model=model)
        fused = model(**batch, use_cache=False).loss
    torch.testing.assert_close(fused, plain, atol=1e-4, rtol=1e-4)


# --- sharded training: FSDP is GPU-only in Accelerate, so the job spec is what is checked ---


def test_fsdp_job_runs_every_gpu_with_the_shipped_fsdp_config(tmp_path: Path) -> None:
    from finetune_phi.cloud.finetune.custom import FinetuneRequest, build_job

    data = prepare(out_dir=tmp_path, size=SampleSize(rows=10), seed=1, from_path=SAMPLE)
    request = FinetuneRequest(
        train_file=data.train, eval_file=data.eval, nodes=2, gpus_per_node=8, fsdp=True
    )
    request.check()
    job = build_job(request, "gpu-cluster")
    assert "--fsdp --fsdp_config fsdp.json --activation_checkpointing false" in job.command
    assert job.resources.instance_count == 2
    assert job.distribution.process_count_per_instance == 8
    assert (Path(job.code) / "fsdp.json").is_file()
    shipped = json.loads((TRAIN_SOURCE / "fsdp.json").read_text())
    assert shipped["version"] == 2
    assert shipped["state_dict_type"] == "FULL_STATE_DICT"  # what final_model reloads


def test_the_shipped_fsdp_config_is_one_the_trainer_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from finetune_phi.cloud.finetune.custom import training_script

    # The Trainer's FSDP arguments export this; put it back as it was afterwards.
    monkeypatch.delenv("FSDP_CPU_RAM_EFFICIENT_LOADING", raising=False)
    _, args, _ = (
        training_script()
        .make_parser()
        .parse_args_and_config(
            [
                "--fsdp",
                "--fsdp_config",
                str(TRAIN_SOURCE / "fsdp.json"),
                "--output_dir",
                "x",
                "--use_cpu",
                "true",
                "--bf16",
                "false",
                "--model_name_or_path",
                "m",
                "--train_file",
                "t",
            ]
        )
    )
    plugin = args.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2
    assert plugin["activation_checkpointing"] is True
    assert plugin["state_dict_type"] == "FULL_STATE_DICT"
    assert plugin["cpu_ram_efficient_loading"] is True
