"""`python -m infra.cleanup` is now `phi cleanup`: this alias says so, then runs it with the
same arguments and exits with its code (`finetune_phi.core.renames`: it goes in 0.3)."""

import sys

from finetune_phi.cli.main import main
from finetune_phi.core.renames import renamed

renamed("`python -m infra.cleanup`", "`phi cleanup`")
sys.exit(main(["cleanup", *sys.argv[1:]]))
