"""The one error family of `phi`: what went wrong, in words a user can act on, and an exit code.

Every layer raises these for foreseeable failures; the entry point (`finetune_phi.cli.main`) catches
`PhiError` alone and prints `phi: error: <message>`, never a traceback.

- `UsageError` (exit 2, as argparse uses): the command was called wrongly: a bad option
  value, a missing file, a stack that lacks an output. Found before anything is sent.
- `PhiError` (exit 1): a failure at run time: a service refused, a rollout stopped.
"""

from __future__ import annotations


class PhiError(Exception):
    """A failure at run time; the message says what happened and what to do."""

    exit_code = 1


class UsageError(PhiError):
    """Bad input, refused before anything was created, sent or spent."""

    exit_code = 2
