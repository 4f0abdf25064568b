"""`phi verify` (train/serve parity) against a real `phi serve`: it passes on the fine-tune
served as trained, and names where the answers part on the classic faults: the base model
served in its place, another chat template."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from finetune_phi.cli.main import main
from finetune_phi.evaluation.parity import (
    LOGPROB_TOLERANCE,
    TIE_MARGIN,
    Comparison,
    agreement,
)
from tests.content_safety_server import S0_REQUESTS_PER_SECOND, ContentSafetyStandIn, TokenServer
from tests.support import ACCEPTED_RISK, catalog_layout, serving
from tests.test_deploy import OUTPUTS, FakeMlClient, FakeService


def verify(model: Path, served: str, data: Path) -> list[str]:
    return [
        *("verify", "--model", str(model), "--served", served),
        *("--data", str(data), "--limit", "4", "--max-new-tokens", "16"),
    ]


def served_copy(fine_tuned: Path, tmp_path: Path) -> Path:
    """A copy of the fine-tune's MLflow model folder, to break."""
    copy = tmp_path / "served"
    shutil.copytree(fine_tuned / "model", copy)
    return copy


def test_the_fine_tune_served_as_trained_agrees(
    scoring_server: str, fine_tuned: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(verify(fine_tuned / "model", scoring_server, fine_tuned / "data" / "eval_data.jsonl"))
        == 0
    )
    *_, agreement_line, logprobs_line = capsys.readouterr().out.splitlines()
    assert agreement_line.startswith("agreement: 100% of 4 prompts")
    # the same engine, the same arithmetic: the same first-token log-probabilities
    assert logprobs_line.startswith("first-token log-probabilities: at most 0.0000 apart")


def test_the_fine_tune_served_by_vllm_agrees(
    vllm_server: str, fine_tuned: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two engines, one dtype (the model's own, float32, which the front asks vLLM for):
    the same answers, and log-probabilities equal but for rounding."""
    assert (
        main(verify(fine_tuned / "model", vllm_server, fine_tuned / "data" / "eval_data.jsonl"))
        == 0
    )
    *parted, agreement_line, logprobs_line = capsys.readouterr().out.splitlines()
    assert agreement_line.startswith("agreement: 100% of 4 prompts")
    assert all(line.endswith(": agrees)") for line in parted)
    gap = float(logprobs_line.split(" at most ")[1].split()[0])
    assert gap < 1e-3 < LOGPROB_TOLERANCE  # in bfloat16 they were up to 0.006 apart


def test_the_base_model_served_in_its_place_is_caught(
    fine_tuned: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = served_copy(fine_tuned, tmp_path)
    shutil.copy(tiny_model / "model.safetensors", wrong / "model" / "model.safetensors")
    with serving(wrong) as url:
        assert main(verify(fine_tuned / "model", url, fine_tuned / "data" / "eval_data.jsonl")) == 1
    captured = capsys.readouterr()
    assert "differ at character" in captured.out
    assert "the served model answers unlike the trained one" in captured.err


def test_another_chat_template_is_caught(
    fine_tuned: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = served_copy(fine_tuned, tmp_path)
    template = wrong / "components" / "tokenizer" / "chat_template.jinja"
    template.write_text(template.read_text().replace("'|>\\n'", "'|>'"))
    assert (
        template.read_text()
        != (fine_tuned / "model" / "components" / "tokenizer" / "chat_template.jinja").read_text()
    )
    with serving(wrong) as url:
        assert main(verify(fine_tuned / "model", url, fine_tuned / "data" / "eval_data.jsonl")) == 1
    assert "differ at character" in capsys.readouterr().out


def test_what_counts_as_the_same_answer() -> None:
    same = Comparison(1, "Paris is the capital.", "Paris is the capital.")
    assert (same.divergence, same.agrees(TIE_MARGIN)) == (None, True)
    cut = Comparison(2, "Paris is the capital of France", "Paris is the capital of Fran")
    assert (cut.divergence, cut.cut_short, cut.agrees(0.0)) == (28, True, True)
    empty = Comparison(3, "Paris is the capital.", "")
    assert (empty.cut_short, empty.agrees(TIE_MARGIN)) == (False, False)
    tie = Comparison(4, "It is 1", "It is is", margin=0.1)
    assert tie.agrees(TIE_MARGIN)
    assert not tie.agrees(0.05)
    other = Comparison(5, "Paris.", "London.")
    assert not other.agrees(TIE_MARGIN)
    assert other.describe() == "line 5: differ at character 0: trained 'Paris.', served 'London.'"
    assert agreement([same, cut, empty, tie, other]) == 3 / 5


class JobOutputs:
    """Azure ML's `jobs.download`: the job's named output where the SDK puts it."""

    def __init__(self, model: Path) -> None:
        self.model = model
        self.asked: list[tuple[str, str]] = []

    def download(self, name: str, output_name: str, download_path: Path) -> None:
        self.asked.append((name, output_name))
        shutil.copytree(self.model, Path(download_path) / "named-outputs" / output_name)


class Keys:
    primary_key = "endpoint-k3y"


def test_phi_deploy_checks_the_new_deployment_against_the_jobs_model_before_traffic(
    scoring_server: str,
    fine_tuned: Path,
    tiny_model: Path,
    service: ContentSafetyStandIn,
    signed_in: TokenServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The default rollout after `phi eval --safety` passed: the job's model output
    downloaded once, matched to the report's candidate and loaded for the parity check, the
    new deployment (here a `phi serve` of the same model, at the scoring URI) asked alone,
    traffic moved after."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs.json").write_text(
        json.dumps({**OUTPUTS, "scoringUri": f"{scoring_server}/score"})
    )
    shutil.copytree(fine_tuned / "data", tmp_path / "data")
    azure_ml = FakeService({"blue": 100})
    client = FakeMlClient(azure_ml)
    jobs = JobOutputs(fine_tuned / "model")
    client.jobs = jobs  # type: ignore[attr-defined]
    client.online_endpoints.get_keys = lambda name: Keys()  # type: ignore[attr-defined]
    monkeypatch.setattr("finetune_phi.core.stack_outputs.Workspace.client", lambda _: client)
    evaluate = ["eval", "--base", str(tiny_model), "--candidate", str(fine_tuned / "model")]
    safety = ["--safety", "--safety-endpoint", service.base_url]
    safety += ["--safety-rate", S0_REQUESTS_PER_SECOND, "--max-new-tokens", "8"]
    assert main([*evaluate, *safety]) == 0, capsys.readouterr().err
    assert main(["deploy", "--outputs", "outputs.json", "--job", "sft-7"]) == 0
    assert jobs.asked == [("sft-7", "model")]
    out = capsys.readouterr()
    assert "agreement: 100% of" in out.out
    assert "(deployment green vs" in out.out
    assert azure_ml.endpoint.traffic == {"blue": 0, "green": 100}


def test_phi_deploy_needs_the_held_out_prompts_or_no_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS))
    service = FakeService({"blue": 100})
    monkeypatch.setattr(
        "finetune_phi.core.stack_outputs.Workspace.client", lambda _: FakeMlClient(service)
    )
    deploy = ["deploy", "--outputs", "outputs.json", "--job", "sft-7", *ACCEPTED_RISK]
    assert main(deploy) == 2
    assert "--verify-data data/eval_data.jsonl: no such file" in capsys.readouterr().err
    assert service.events == []


def test_a_catalog_models_flavor_is_verified_as_it_is_served(
    fine_tuned: Path, scoring_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`phi deploy` after `--method catalog` checks the pipeline's hftransformersv2 output
    against the deployment: loaded here as the engines load it, it agrees with its weights
    served in our flavor."""
    catalog = catalog_layout(fine_tuned / "model", tmp_path / "catalog-model")
    data = fine_tuned / "data" / "eval_data.jsonl"
    assert main(verify(catalog, scoring_server, data)) == 0, capsys.readouterr().err
    assert "agreement: 100% of 4 prompts" in capsys.readouterr().out
