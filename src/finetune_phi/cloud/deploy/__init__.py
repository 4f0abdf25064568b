"""Serving a fine-tuned model: `managed` (blue/green on the stack's managed online endpoint)
and `serverless` (a pay-as-you-go endpoint in the Foundry project)."""

from __future__ import annotations

from finetune_phi.core.azure_facts import VM_SIZES, retirement_problem
from finetune_phi.core.errors import UsageError


def serving_sizes() -> list[str]:
    """The sizes a managed deployment may run on: the table of Azure facts, less the retired."""
    return [name for name in VM_SIZES if retirement_problem("vm", name) is None]


def check_instance_type(name: str, option: str = "--instance-type") -> None:
    """Refuse a size the table of Azure facts does not know (listing those it does) or one
    Azure has retired (naming its replacement): UsageError, before anything is sent."""
    retired = retirement_problem("vm", name)
    if retired is not None:
        raise UsageError(f"{option} {retired}")
    if name not in VM_SIZES:
        raise UsageError(
            f"{option} {name!r}: not a VM size in src/finetune_phi/core/azure_facts.py; "
            f"one of {', '.join(serving_sizes())}"
        )
