"""Preference tuning after SFT: `phi train --local --trainer dpo` and `phi finetune submit
--trainer dpo`. Nonsense is refused in one line before any model loads; on the tiny model,
DPO from the SFT run's MLflow model raises the held-out preference margin, records the
trainer and TRL's reward metrics, and writes a merged MLflow model the scoring server serves;
the job spec loads with azure-ai-ml; the managed methods refuse DPO with Azure's own word."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from azure.ai.ml import PyTorchDistribution, load_job
from azure.ai.ml.entities import Command

from finetune_phi.cli.main import main
from finetune_phi.cloud.finetune import methods
from finetune_phi.cloud.finetune.custom import DEFAULT_MODEL, training_script
from finetune_phi.cloud.finetune.data_assets import content_version
from finetune_phi.cloud.finetune.method import FinetuneMethod
from finetune_phi.cloud.finetune.trainers import DPO, SFT, TRAINERS
from finetune_phi.core import azure_facts
from finetune_phi.core.folders import SCORE_SOURCE, TRAIN_SOURCE
from tests.support import EXAMPLE_OUTPUTS, serving, submit_workdir

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
PAIR = {
    "prompt": PROMPT,
    "chosen": [{"role": "assistant", "content": "The capital of France is Paris."}],
    "rejected": [{"role": "assistant", "content": "The capital of France is Rome."}],
}
CHAT = {"messages": [*PROMPT, {"role": "assistant", "content": "The capital is Paris."}]}


def jsonl(path: Path, *rows: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# --- the training script refuses nonsense before any model loads (a job started without phi) ---


def script_refusal(tmp_path: Path, *args: str) -> str:
    """The one line the training script stops on, run as the job runs it, before it loads
    anything (no output folder)."""
    script = training_script()
    argv = [*args, "--model_name_or_path", "unused", "--output_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as stopped:
        script.main(*script.parse(argv))
    assert not (tmp_path / "out").exists()
    return str(stopped.value)


BETA_RULE = (
    "must be above 0 (it scales the preference margin against staying near the starting "
    "model; TRL defaults to 0.1, typically 0.1 to 0.5)"
)


@pytest.mark.parametrize(
    ("args", "rows", "line"),
    [
        (
            ["--trainer", "dpo"],
            [],
            "error: --train_file {data}: the file is empty: it holds no preference pairs "
            "(prompt, chosen, rejected)",
        ),
        (
            ["--trainer", "dpo", "--beta", "0"],
            [PAIR],
            f"error: --beta 0: {BETA_RULE}",
        ),
        (
            ["--trainer", "dpo", "--beta", "-0.5"],
            [PAIR],
            f"error: --beta -0.5: {BETA_RULE}",
        ),
        (
            ["--trainer", "dpo", "--beta", "nan"],
            [PAIR],
            f"error: --beta nan: {BETA_RULE}",
        ),
        (
            ["--trainer", "dpo", "--loss_type", "sigmoidal"],
            [PAIR],
            "error: --loss_type sigmoidal: must be one of sigmoid, hinge, ipo, exo_pair, "
            "nca_pair, robust, bco_pair, sppo_hard, aot, aot_unpaired, apo_zero, apo_down, "
            "discopop, sft, sigmoid_norm",
        ),
        (
            ["--trainer", "dpo"],
            [CHAT],
            "error: --train_file {data}: line 1 is a chat row, not a preference pair: "
            "--trainer dpo trains on prompt/chosen/rejected rows (phi data prepare --task "
            "preference)",
        ),
        (
            [],
            [CHAT, PAIR],
            "error: --train_file {data}: line 2 is a preference pair (chosen, rejected), not a "
            "chat row: train on pairs with --trainer dpo",
        ),
        (
            ["--trainer", "dpo", "--packing", "true"],
            [PAIR],
            "error: --packing: not an argument of --trainer dpo (an argument of --trainer sft)",
        ),
        (
            ["--beta", "0.1"],
            [CHAT],
            "error: --beta: not an argument of --trainer sft (an argument of --trainer dpo)",
        ),
        (["--trainer", "kto"], [PAIR], "error: --trainer kto: must be one of sft, dpo"),
    ],
    ids=[
        "no-pairs",
        "beta-0",
        "beta-negative",
        "beta-nan",
        "loss-type",
        "chat-to-dpo",
        "pairs-to-sft",
        "sft-argument",
        "dpo-argument",
        "trainer",
    ],
)
def test_the_script_refuses_nonsense_in_one_line_before_loading(
    tmp_path: Path, args: list[str], rows: list[dict[str, Any]], line: str
) -> None:
    data = jsonl(tmp_path / "data.jsonl", *rows)
    refusal = script_refusal(tmp_path, *args, "--train_file", str(data))
    assert refusal == line.format(data=data)


def test_the_script_refuses_a_recipe_written_for_the_other_trainer(tmp_path: Path) -> None:
    data = jsonl(tmp_path / "pairs.jsonl", PAIR)
    recipe = str(SFT.hyperparameters)
    args = ["--trainer", "dpo", "--config", recipe, "--train_file", str(data)]
    assert script_refusal(tmp_path, *args) == (
        f"error: --config {recipe}: --packing: not an argument of --trainer dpo (an argument "
        "of --trainer sft)"
    )


@pytest.mark.slow
def test_a_refusal_is_the_last_line_of_a_real_run(tmp_path: Path) -> None:
    """As Azure ML runs it: exit 1, the refusal last on stderr, nothing written (slow: a
    process that imports torch and TRL)."""
    empty = jsonl(tmp_path / "pairs.jsonl")
    result = subprocess.run(
        [
            sys.executable,
            str(TRAIN_SOURCE / "train.py"),
            *("--trainer", "dpo", "--config", str(DPO.hyperparameters)),
            *("--model_name_or_path", "unused", "--train_file", str(empty)),
            *("--output_dir", str(tmp_path / "out"), "--model_output", str(tmp_path / "model")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --train_file {empty}: the file is empty: it holds no preference pairs "
        "(prompt, chosen, rejected)"
    )
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "model").exists()


def test_the_dpo_recipe_is_dpoconfigs_and_starts_where_sft_does() -> None:
    """Every key of hyperparameters-dpo.yaml is a DPO argument, beta is valid, and the
    default model is the SFT recipe's (DPO after SFT on the same model)."""
    script = training_script()
    recipe = yaml.safe_load(DPO.hyperparameters.read_text())
    sft = yaml.safe_load(SFT.hyperparameters.read_text())
    assert recipe["model_name_or_path"] == sft["model_name_or_path"] == DEFAULT_MODEL
    known = {a.dest for a in script.make_parser("dpo")._actions}
    assert set(recipe) <= known
    _, training_args, _ = script.parse(
        ["--trainer", "dpo", "--config", str(DPO.hyperparameters), "--train_file", "x"]
    )
    assert script.trainer_problem(training_args, "dpo") is None
    assert training_args.beta == 0.1
    assert training_args.loss_type == ["sigmoid"]


def test_the_scripts_lists_match_trl_and_the_scoring_script() -> None:
    """The loss types are DPOConfig's own (its help lists them); the MLflow layouts the
    script starts from are the ones the scoring script serves."""
    from trl import DPOConfig

    import finetune_phi.evaluation.models as models

    script = training_script()
    help_text = DPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    assert set(re.findall(r"`'([a-z_]+)'`", help_text)) == set(script.DPO_LOSS_TYPES)
    score = models.scoring_script()
    assert score.MLFLOW_LAYOUTS.keys() == script.MLFLOW_LAYOUTS.keys()
    for flavor, (weights, tokenizer, _config) in score.MLFLOW_LAYOUTS.items():
        assert script.MLFLOW_LAYOUTS[flavor] == (weights, tokenizer)
    assert (SCORE_SOURCE / "score.py").is_file()


# --- phi refuses the same, and a file of the wrong kind, before anything runs or is sent ---


@pytest.mark.parametrize(
    ("args", "rows", "line"),
    [
        (
            ["--trainer", "dpo"],
            [CHAT],
            "--train-file {data} holds chat data, not preference data: --trainer dpo trains on "
            "preference JSONL (phi data prepare --task preference); train on this file with "
            "--trainer sft",
        ),
        (
            [],
            [PAIR],
            "--train-file {data} holds preference data, not chat data: --trainer sft trains on "
            "chat JSONL (phi data prepare); train on this file with --trainer dpo",
        ),
        (
            ["--trainer", "dpo"],
            [],
            "--train-file {data}: the file holds no rows: no preference pairs to train on",
        ),
        (
            ["--trainer", "dpo", "--beta", "0"],
            [PAIR],
            f"--beta 0: {BETA_RULE}",
        ),
        (
            ["--trainer", "dpo", "--packing", "true"],
            [PAIR],
            "--packing: an argument of --trainer sft, not of --trainer dpo",
        ),
        (["--beta", "0.2"], [CHAT], "--beta: an argument of --trainer dpo, not of --trainer sft"),
    ],
    ids=["chat-to-dpo", "pairs-to-sft", "no-pairs", "beta", "sft-argument", "dpo-argument"],
)
def test_phi_train_refuses_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    rows: list[dict[str, Any]],
    line: str,
) -> None:
    data = jsonl(tmp_path / "data.jsonl", *rows)
    command = ["train", "--local", "--model", str(tmp_path), "--train-file", str(data)]
    assert main([*command, "--output-dir", str(tmp_path / "out"), *args]) == 2
    assert capsys.readouterr().err == f"phi: error: {line.format(data=data)}\n"
    assert not (tmp_path / "out").exists()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A submit folder (chat data, stack outputs) with preference pairs beside the chat data."""
    work = submit_workdir(tmp_path, monkeypatch, EXAMPLE_OUTPUTS)
    (work / "pairs").mkdir()
    jsonl(work / "pairs" / "train.jsonl", PAIR, {**PAIR, "prompt": [*PROMPT]})
    jsonl(work / "pairs" / "eval.jsonl", PAIR)
    return work


PAIRS = ["--train-file", "pairs/train.jsonl", "--eval-file", "pairs/eval.jsonl"]


def submit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["finetune", "submit", "--outputs", "outputs.json", "--dry-run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_dpo_job_spec_loads_with_azure_ai_mls_loader(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DPO on one node of four GPUs, from an SFT job's model, with the pairs as versioned
    data assets: the printed YAML is a command job azure-ai-ml loads."""
    sft_job = "azureml://jobs/sft-job-7/outputs/model"
    args = ["--trainer", "dpo", *PAIRS, "--gpus-per-node", "4", "--model", sft_job]
    # phi --verbose: the environment's pins listed, as azure-ai-ml's loader reads them.
    command = ["--verbose", "finetune", "submit", "--outputs", "outputs.json", "--dry-run"]
    assert main([*command, *args, "--beta", "0.2"]) == 0
    (workdir / "job.yaml").write_text(capsys.readouterr().out)
    job = load_job(workdir / "job.yaml")
    assert isinstance(job, Command)
    assert job.command is not None
    assert job.command.startswith(
        "python train.py --config hyperparameters-dpo.yaml "
        "--model_name_or_path ${{inputs.base_model}} "
    )
    assert " --output_dir outputs/checkpoints --trainer dpo --beta 0.2" in job.command
    assert job.command.endswith("--beta 0.2")
    assert job.inputs["base_model"].type == "mlflow_model"
    assert job.inputs["base_model"].path == sft_job
    version = content_version(workdir / "pairs" / "train.jsonl")
    assert job.inputs["train_data"].path.removeprefix("azureml:") == (
        f"phi-preference-train:{version}"
    )
    assert job.inputs["eval_data"].path.removeprefix("azureml:").startswith("phi-preference-eval:")
    assert job.outputs["model"].type == "mlflow_model"
    assert isinstance(job.distribution, PyTorchDistribution)
    assert job.distribution.process_count_per_instance == 4
    assert (job.tags or {})["trainer"] == "dpo"
    assert job.display_name == "dpo job sft-job-7's model (gpu)"
    assert (TRAIN_SOURCE / "hyperparameters-dpo.yaml").is_file()  # the job's code holds it


def test_a_hub_model_is_the_dpo_jobs_default_and_sft_keeps_its_command(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = submit(capsys, "--trainer", "dpo", *PAIRS)
    assert code == 0, err
    spec = yaml.safe_load(out)
    assert f"--model_name_or_path {DEFAULT_MODEL} " in spec["command"]
    assert "base_model" not in spec["inputs"]
    code, out, err = submit(capsys)
    assert code == 0, err
    spec = yaml.safe_load(out)
    assert spec["command"].startswith("python train.py --config hyperparameters.yaml")
    assert "--output_dir outputs/checkpoints --trainer sft" in " ".join(spec["command"].split())
    assert spec["inputs"]["train_data"]["path"].startswith("azureml:phi-chat-train:")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--trainer", "dpo", "--train-file", "data/train_data.jsonl"],
            "--train-file data/train_data.jsonl holds chat data, not preference data: --trainer "
            "dpo trains on preference JSONL (phi data prepare --task preference); train on this "
            "file with --trainer sft",
        ),
        (
            ["--train-file", "pairs/train.jsonl"],
            "--train-file pairs/train.jsonl holds preference data, not chat data: --trainer sft "
            "trains on chat JSONL (phi data prepare); train on this file with --trainer dpo",
        ),
        (
            ["--trainer", "dpo", *PAIRS, "--beta", "-1"],
            f"--beta -1: {BETA_RULE}",
        ),
        (
            ["--trainer", "dpo", *PAIRS, "--model", "pairs"],
            "--model pairs: a folder on this machine, which the job on the cluster cannot read; "
            "start from a job's model with --model azureml://jobs/JOB/outputs/model, or register "
            "the folder and give azureml:NAME:VERSION",
        ),
        (
            ["--trainer", "dpo", *PAIRS, "--model", "azureml:sft-model"],
            "--model azureml:sft-model: an Azure ML model is azureml://jobs/JOB/outputs/model "
            "(a job's output), azureml:NAME:VERSION or azureml://registries/R/models/NAME/"
            "versions/V",
        ),
    ],
    ids=["chat-to-dpo", "pairs-to-sft", "beta", "local-model", "model"],
)
def test_submit_refuses_in_one_line_before_sending(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    code, out, err = submit(capsys, *args)
    assert code == 2
    assert err == f"phi: error: {line}\n"
    assert out == ""


@pytest.mark.parametrize("method", ["catalog", "serverless"])
def test_the_managed_methods_refuse_dpo_with_what_azure_offers(
    workdir: Path, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    code, out, err = submit(capsys, "--method", method, "--trainer", "dpo", *PAIRS)
    assert code == 2
    assert out == ""
    [line] = err.splitlines()
    assert line == (
        f"phi: error: --trainer dpo: --method {method} {methods.METHODS[method].trainer_refusal}"
        "; --method custom runs it"
    )
    assert "chat data only" in line
    assert (
        "Azure's managed DPO fine-tunes Azure OpenAI models only (gpt-4o, gpt-4.1, "
        "gpt-4.1-mini, gpt-4.1-nano: https://learn.microsoft.com/azure/foundry/openai/how-to/"
        "fine-tuning-direct-preference-optimization, ms.date 10/05/2026), no Phi model"
    ) in line


def test_the_managed_dpo_fact_is_dated_and_sourced() -> None:
    from datetime import date

    assert date.today() >= azure_facts.MANAGED_DPO_CHECKED
    assert azure_facts.MANAGED_DPO_MODELS == ("gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano")
    assert re.search(r"ms\.date \d{2}/\d{2}/\d{4}", azure_facts.MANAGED_DPO)
    assert "fine-tuning-direct-preference-optimization" in azure_facts.MANAGED_DPO


def test_every_method_runs_known_trainers_and_help_says_which() -> None:
    assert {m.name for m in methods.runners("dpo")} == {"custom"}
    assert {m.name for m in methods.runners("sft")} == set(methods.METHODS)
    odd = FinetuneMethod(
        name="odd",
        help="runs an unknown trainer",
        options=(),
        check=lambda request: None,
        plan=methods.METHODS["custom"].plan,
        workspace_output="workspaceName",
        default_model="x",
        trainers=("kto",),
    )
    with pytest.raises(
        ValueError, match=re.escape("--method odd: no trainer 'kto' in trainers.TRAINERS")
    ):
        methods.register(odd)
    assert "odd" not in methods.METHODS
    assert set(TRAINERS) == {"sft", "dpo"}


# --- DPO on the tiny model, after SFT (slow: it trains) ---


def test_dpo_records_the_trainer_and_its_reward_metrics(
    dpo_tuned: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")

    metrics = json.loads((dpo_tuned / "checkpoints" / "metrics.json").read_text())
    assert metrics["trainer"] == "dpo"
    assert metrics["reference_model"] == "copy"  # no LoRA: TRL holds a second copy
    for name in ("rewards/accuracies", "rewards/margins"):
        assert name in metrics
        assert f"eval_{name}" in metrics
    assert 0 <= metrics["eval_rewards/accuracies"] <= 1
    assert metrics["rewards/margins"] > 0  # the chosen answers' reward pulled ahead
    assert metrics["tokens"] > 0
    *_, losses, model = (dpo_tuned / "stdout.txt").read_text().splitlines()
    assert model == f"model: {dpo_tuned / 'model'}"
    assert re.search(r"; reward accuracy [\d.]+, margin [-\d.]+; eval reward accuracy", losses)
    client = mlflow.MlflowClient(tracking_uri=(dpo_tuned / "mlruns").as_uri())
    [run] = client.search_runs(
        experiment_ids=[e.experiment_id for e in client.search_experiments()]
    )
    assert run.data.params["trainer"] == "dpo"
    assert run.data.params["beta"] == "0.1"
    assert "packing" not in run.data.params
    assert {"rewards/accuracies", "rewards/margins", "eval_rewards/margins"} <= set(
        run.data.metrics
    )
    assert run.data.metrics["final.rewards/margins"] == pytest.approx(metrics["rewards/margins"])
    history = client.get_metric_history(run.info.run_id, "rewards/margins")
    assert len(history) >= 3  # a curve, not a point


def test_dpo_raises_the_held_out_preference_over_the_sft_model(
    fine_tuned: Path,
    dpo_tuned: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Measured, not assumed, with `phi eval --pairs` as a user runs it: on the held-out
    split's pairs (prompts DPO never saw), the DPO model prefers the chosen answers by a
    wider mean margin than the SFT model it started from, and at least as often; the report
    gives both models with intervals."""
    monkeypatch.chdir(tmp_path)  # no held-out chat file here: the pairs run alone
    argv = ["eval", "--base", str(fine_tuned / "model"), "--candidate", str(dpo_tuned / "model")]
    pairs = ["--pairs", str(dpo_tuned / "pairs" / "eval.jsonl"), "--gate", "margin"]
    assert main([*argv, *pairs]) == 0, capsys.readouterr().err
    section = json.loads(Path("eval/report.json").read_text())["preference"]
    base, candidate = section["base"], section["candidate"]
    assert candidate["margin"]["value"] > base["margin"]["value"] + 1.0, section
    accuracy = "preference_accuracy"
    assert candidate[accuracy]["value"] >= base[accuracy]["value"], section
    for metrics in (base, candidate):
        low, high = metrics["margin"]["ci95"]
        assert low <= metrics["margin"]["value"] <= high
    assert section["delta"]["margin"]["ci95"][0] > 0


def test_the_merged_dpo_model_answers_through_the_scoring_server(
    fine_tuned: Path, dpo_tuned: Path
) -> None:
    mlmodel = yaml.safe_load((dpo_tuned / "model" / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["transformers"]
    assert flavor["pipeline_model_type"] == "Phi3ForCausalLM"
    assert flavor["source_model_name"] == str(fine_tuned / "model")  # DPO after that SFT
    card = yaml.safe_load((dpo_tuned / "model" / "model_card_data.yaml").read_text())
    assert card == {"license": "unknown"}  # the SFT model's card carried over
    parameters = {"max_new_tokens": 8, "do_sample": False}  # greedy: one right answer
    with serving(dpo_tuned / "model") as url:
        body = {"input_data": {"input_string": PROMPT, "parameters": parameters}}
        response = requests.post(f"{url}/score", json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == greedy_answer(dpo_tuned / "model", PROMPT, 8)


def greedy_answer(model_dir: Path, messages: list[dict[str, str]], max_new_tokens: int) -> str:
    """The merged model's own greedy answer, straight from transformers: what the server must
    say if it serves these weights (sampling could end at the first token on any model)."""
    import mlflow.transformers
    import torch

    components = mlflow.transformers.load_model(str(model_dir), return_type="components")
    model, tokenizer = components["model"], components["tokenizer"]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
    with torch.inference_mode():
        output = model.generate(
            ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    return str(tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)).strip()


@pytest.mark.slow
@pytest.mark.parametrize("quantized", [False, True], ids=["lora", "qlora"])
def test_dpo_with_lora_has_no_second_model_and_merges(
    tiny_model: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], quantized: bool
) -> None:
    """LoRA (and QLoRA, bitsandbytes' CPU backend) as for SFT: the reference is the model with
    its adapter off (switched by TRL without a library's warning), and what is written is the
    full merged model."""
    pairs = jsonl(tmp_path / "pairs.jsonl", *[PAIR] * 8)
    lora = [
        "--use_peft",
        "--lora_r",
        "8",
        "--lora_alpha",
        "16",
        "--lora_target_modules",
        "all-linear",
    ]
    code = main(
        [
            *("train", "--local", "--trainer", "dpo", "--model", str(tiny_model)),
            *("--train-file", str(pairs), "--output-dir", str(tmp_path / "out")),
            *("--num_train_epochs", "1", "--per_device_train_batch_size", "4"),
            *("--learning_rate", "1e-2", "--max_length", "64", "--logging_steps", "1"),
            *lora,
            *(["--load_in_4bit"] if quantized else []),
        ]
    )
    assert code == 0
    assert "Warning:" not in capfd.readouterr().err
    metrics = json.loads((tmp_path / "out" / "checkpoints" / "metrics.json").read_text())
    assert metrics["trainer"] == "dpo"
    assert metrics["reference_model"] == "adapter-off"
    assert metrics["peft"] == {"r": 8, "alpha": 16, "target_modules": "all-linear"}
    assert metrics["quantization"] == ("4bit" if quantized else None)
    assert 0 < metrics["trainable_parameters"] < metrics["parameters"] / 5
    config = json.loads((tmp_path / "out" / "model" / "model" / "config.json").read_text())
    assert "quantization_config" not in config
    assert (tmp_path / "out" / "checkpoints" / "adapter" / "adapter_config.json").is_file()


def test_submit_dpo_reads_the_pairs_prepare_writes_by_default(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No file options: --trainer dpo takes data/train_pairs.jsonl and data/eval_pairs.jsonl,
    where `phi data prepare --task preference` writes them; SFT keeps the chat files."""
    source = jsonl(workdir / "source.jsonl", *[PAIR] * 10)
    assert main(["data", "prepare", "--task", "preference", "--from", str(source)]) == 0
    capsys.readouterr()
    for trainer, (train, held_out) in {
        "dpo": ("train_pairs.jsonl", "eval_pairs.jsonl"),
        "sft": ("train_data.jsonl", "eval_data.jsonl"),
    }.items():
        code, out, err = submit(capsys, "--trainer", trainer)
        assert code == 0, err
        inputs = yaml.safe_load(out)["inputs"]
        for name, file in (("train_data", train), ("eval_data", held_out)):
            version = content_version(workdir / "data" / file)
            assert inputs[name]["path"].endswith(f":{version}"), (trainer, name)
