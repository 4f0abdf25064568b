"""finetune-phi: your own fine-tuned Phi on Azure, per environment, as code.

One import package, in layers that import downwards only:

- `cli/`: the `phi` command line; one module per command group, its arguments beside its
  handler, and the one error handler (`cli/main.py`).
- `cloud/`: Azure operations: fine-tuning (`finetune/`, one module per method behind a
  registry), deployment (`deploy/`), endpoint clients with keys fetched at run time, the
  preflight (`doctor`), prices and cost, the cleanup.
- `local/`: this machine's runtime: the scoring server, the rehearsal, the tiny model, the
  Prompt flow connection, the Agent Framework chat's process.
- `evaluation/` and `data/`: `phi eval`, and the chat format with its preparation.
- `serving/`: the serving engines (one module each, behind a registry): what each speaks,
  how it starts locally and what a managed deployment of it needs. Plain data: it imports
  only `core/`, and `local/` and `cloud/` read it.
- `endpoint_client.py`: a framework-free client of the scoring contracts.
- `core/`: facts with dates, naming, config keys and their validation, the outputs contract,
  stack files, the state file, errors, and where the shipped folders are. The Pulumi program
  (`infra/`) and the policy pack (`policy/`) import from here too.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("finetune-phi")
except PackageNotFoundError:  # a checkout on sys.path without an install
    __version__ = "0+unknown"
