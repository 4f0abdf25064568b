"""`python -m finetune_phi`: the same as `phi`."""

import sys

from finetune_phi.cli.main import main

sys.exit(main())
