"""Entry point Pulumi runs for `--policy-pack policy`: serves the rules to the engine.

PolicyPack starts the analyzer's gRPC server on 127.0.0.1 and never returns, so the rules
live in `policy/policies.py`, where tests import them.
"""

import sys
from pathlib import Path

from pulumi_policy import Policy, PolicyPack

# Pulumi runs this folder as a script; its rules import as the `policy` package, as the
# tests import them, so the project root goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from policy.policies import POLICIES

rules: list[Policy] = list(POLICIES)
PolicyPack(
    name="finetune-phi",
    description="Guardrails for the finetune-phi stacks: scale-to-zero GPUs, no retired "
    "sizes, no public or local-auth access, cost tags.",
    policies=rules,
)
