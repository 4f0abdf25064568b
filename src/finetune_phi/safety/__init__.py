"""Screening chat data with Azure AI Content Safety before it reaches a fine-tuning job.

`client` speaks the service's text analysis (`text:analyze`, api-version 2024-09-01) with an
Entra ID token; `screen` runs every user and assistant message of chat rows through it,
resumably, and says which rows reach a severity threshold. It sits beside `data` in the
package's layers: it imports `core`, `data` and `endpoint_client` (its deadline-bound
POST), and the command line imports it.
"""
