"""`python -m flow.maf` is now `flow/agent/chat.py` (or `phi chat --agent`, which finds the
stack's endpoint and key): this alias says so, then runs it with the same arguments."""

import runpy
import sys
from pathlib import Path

print(
    "note: `python -m flow.maf` is now `phi chat --agent` (or flow/agent/chat.py); "
    "this alias goes in 0.3",
    file=sys.stderr,
)
if "--outputs" in sys.argv or any(word.startswith("--outputs=") for word in sys.argv):
    # The old module read the stack outputs itself; the flow now takes the endpoint as given.
    print(
        'flow.maf: error: --outputs is now `phi chat --agent --outputs FILE "QUESTION"`, '
        "which reads the outputs and fetches the key",
        file=sys.stderr,
    )
    sys.exit(2)
sys.argv[0] = str(Path(__file__).resolve().parent / "agent" / "chat.py")
runpy.run_path(sys.argv[0], run_name="__main__")
