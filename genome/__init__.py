"""Genome: real networks taken apart into genes, deduplicated and recombined.

No ray, no mesa: importing `genome` stays fast.
"""

from __future__ import annotations

from genome.errors import BadInput

__all__ = ["BadInput"]
