"""This machine's runtime: the scoring server (`serve`), the offline rehearsal, the tiny
Phi-3 model it trains, and the Prompt flow connection (`flow_connection`)."""
