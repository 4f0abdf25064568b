"""The jobs side of finetune-phi: everything `phi` does after `pulumi up`.

Layers, each importing only the ones below it:

- `cli/`: the command line; one module per command group, its arguments beside its handler.
- `cloud/`: Azure ML operations: fine-tuning (`finetune/`: custom script, catalog pipeline,
  serverless), deployment (`deploy/`: managed endpoint, serverless endpoint), the
  environment and image they share, and endpoint clients with keys fetched at run time.
- `local/`: this machine's runtime: the scoring server, the rehearsal, the tiny model, the
  Prompt flow connection.
- `data/`: the chat format and its preparation.
- `stack_outputs.py` (the typed reader of `infra/contract.py`'s outputs), `state.py` (what one
  command leaves for the next) and `errors.py` (the one error family).
- `uploads/`: the folders Azure ML uploads (training and scoring code with their
  environments), self-contained: they import nothing from this package.
"""
