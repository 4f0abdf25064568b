"""The jobs side: data, fine-tuning, deployment and chat, driven by the `phi` command."""
