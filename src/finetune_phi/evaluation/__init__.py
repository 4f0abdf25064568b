"""`phi eval`: did the fine-tune help? The base and the candidate answer the same held-out
prompts with the same decoding; their answers are scored against the references, their
held-out loss measured where the weights are at hand, and the deltas given with bootstrap
confidence intervals.

`rows` reads the held-out conversations, `models` answers them (a local folder, a hub id, or
an endpoint through the scoring contract), `metrics` scores, `report` writes and gates;
`preference` measures chosen and rejected answers of preference pairs (`--pairs`), `safety`
and `probes` the safety comparison (`--safety`), `parity` what `phi verify` compares."""
