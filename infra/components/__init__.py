"""One ComponentResource per concern; `infra/stack.py` wires them together."""
