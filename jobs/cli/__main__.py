"""`python -m jobs.cli`: the same as `phi`."""

import sys

from jobs.cli.main import main

sys.exit(main())
