"""Serving a fine-tuned model: `managed` (blue/green on the stack's managed online endpoint)
and `serverless` (a pay-as-you-go endpoint in the Foundry project)."""
