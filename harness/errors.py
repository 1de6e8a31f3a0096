"""The one error base: every error about the user's input or files derives from `XfbenchError`.

The command line maps it to a one-line message and exit code 2 in one place (`xfbench.harness.cli`); anything
else escaping a command is a bug and keeps its traceback.
"""
from __future__ import annotations


class XfbenchError(Exception):
    """A problem the user can fix (a name, a file, an option); its message says what and how."""
