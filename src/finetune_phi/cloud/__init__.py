"""Azure ML operations: what `phi` builds, submits and deploys in the stack's workspace.

Every entity is built with azure-ai-ml's own classes and needs no credentials until it is
sent, so each command's `--dry-run` prints exactly what would be sent."""
