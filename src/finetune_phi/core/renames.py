"""Old spellings that still work: each use says what replaced it.

CHANGELOG.md lists them; they go in 0.3.
"""

from __future__ import annotations

import sys

REMOVED_IN = "0.3"


def renamed(old: str, new: str) -> None:
    """One line on stderr: `old` is now `new`."""
    print(
        f"phi: warning: {old} is now {new}; the old spelling goes in {REMOVED_IN}", file=sys.stderr
    )
