"""The three fine-tuning paths: `custom` (our TRL script as a command job), `catalog` (the
model catalog's pipeline on the stack's cluster) and `serverless` (fine-tuning as a service
in the Foundry project). `methods` picks one and checks its options; `data_assets` holds
what they share: the data as versioned assets."""

MODEL_OUTPUT = "model"
"""The named job output holding the MLflow model, for custom and catalog jobs alike:
`phi deploy` registers `azureml://jobs/<job>/outputs/model`."""
