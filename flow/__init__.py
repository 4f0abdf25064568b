"""The chat flow (Prompt flow) and the plain endpoint client it is built on."""

from pathlib import Path

FLOW_DIR = Path(__file__).resolve().parent
"""The Prompt flow folder itself (flow.dag.yaml and its tool), shipped as package data."""
