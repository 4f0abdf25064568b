"""`python -m infra.cleanup` is now `phi cleanup`: this alias says so, then runs it."""

import sys

from finetune_phi.cli.main import main

print(
    "note: `python -m infra.cleanup` is now `phi cleanup`; this alias goes in 0.3", file=sys.stderr
)
sys.exit(main(["cleanup", *sys.argv[1:]]))
