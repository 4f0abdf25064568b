"""The fine-tuning methods: `custom` (our TRL script as a command job), `catalog` (the
model catalog's pipeline on the stack's cluster) and `serverless` (fine-tuning as a service
in the Foundry project), each one module declaring a `FinetuneMethod` (`method`). `methods`
registers them and checks a request against the chosen one; `data_assets` and `models` hold
what they share: the data as versioned assets, the registry models they offer."""

MODEL_OUTPUT = "model"
"""The named job output holding the MLflow model, for custom and catalog jobs alike:
`phi deploy` registers `azureml://jobs/<job>/outputs/model`."""
