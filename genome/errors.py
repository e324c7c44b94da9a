"""The one error type for bad user input, shared by every package.

The CLI turns a `BadInput` into one line on stderr and exit code 2; anything else is a bug.
"""

from __future__ import annotations


class BadInput(ValueError):
    """Input the user can fix: a bad file, value, key or shape. The message names it."""
