"""Entry point Pulumi runs for `--policy-pack policy`: serves the rules to the engine.

PolicyPack starts the analyzer's gRPC server on 127.0.0.1 and never returns, so the rules
live in `policy/policies.py`, where tests import them. Run by hand with -h or --help, it
prints what the pack is and how to run it, and exits 0 without starting the server.
"""

import sys
from pathlib import Path

# Pulumi runs this folder as a script; its rules import as the `policy` package, as the
# tests import them, so the project root goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NAME = "finetune-phi"
DESCRIPTION = (
    "Guardrails for the finetune-phi stacks: scale-to-zero GPUs, no retired sizes, no public "
    "or local-auth access, cost tags."
)
USAGE = """\
usage: pulumi preview --policy-pack policy [--policy-pack-config policy/prod.json]

The {name} CrossGuard policy pack. {description}

Pulumi starts this folder itself as its policy analyzer (a gRPC server it talks to);
run by hand it would only wait for the engine. From the project root, with the stack's
program environment (`make venv-infra`):

  pulumi preview --policy-pack policy --policy-pack-config policy/dev.json --stack dev
  pulumi preview --policy-pack policy --policy-pack-config policy/prod.json --stack prod

Mandatory rules stop a preview, advisory ones warn; policy/prod.json makes the advisory
ones mandatory for prod (and turns on the rule that prod has Content Safety). The rules (policy/policies.py):

{rules}
"""


def usage() -> str:
    from policy.policies import POLICIES, STACK_POLICIES

    rules = "\n".join(
        f"  {rule.name} ({rule.enforcement_level.value if rule.enforcement_level else 'advisory'})"
        for rule in [*POLICIES, *STACK_POLICIES]
    )
    return USAGE.format(name=NAME, description=DESCRIPTION, rules=rules)


def serve() -> None:
    from pulumi_policy import Policy, PolicyPack

    from policy.policies import POLICIES, STACK_POLICIES

    rules: list[Policy] = [*POLICIES, *STACK_POLICIES]
    PolicyPack(name=NAME, description=DESCRIPTION, policies=rules)


if __name__ == "__main__":
    if any(word in ("-h", "--help") for word in sys.argv[1:]):
        print(usage(), end="")
        sys.exit(0)
    serve()
