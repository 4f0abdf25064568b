"""The `phi` command line: `main.py` is the entry point; every other module is one command
group, with its arguments beside its handler. Handlers turn arguments into calls of the
layers below and print results; the rules of what is valid live in those layers."""
