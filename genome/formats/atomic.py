"""Atomic outputs: write under a hidden temporary name next to the target, rename on success.

A command that fails part-way leaves nothing behind: the temporary file or folder is removed and
the target name never appears.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from genome.errors import BadInput


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.tmp-{os.getpid()}")


def check_new_output(target: Path, *, inputs: tuple[Path, ...] = ()) -> Path:
    """Validate an output path before any work is done.

    Args:
        target: the file or folder to create.
        inputs: paths being read; the output may not be one of them (no in-place changes).

    Returns:
        `target` as a `Path`.

    Raises:
        BadInput: the parent folder is missing, the target is one of the inputs, or the target
            exists (a non-empty folder, or a file).
    """
    target = Path(target)
    if not target.parent.exists():
        raise BadInput(f"output folder {target.parent} does not exist")
    if not target.parent.is_dir():
        raise BadInput(f"output folder {target.parent} is a file, not a folder")
    for src in inputs:
        if Path(src).exists() and target.exists() and target.resolve() == Path(src).resolve():
            raise BadInput(f"output {target} is also an input; inputs are never changed in place")
    if target.is_dir():
        if any(target.iterdir()):
            raise BadInput(f"output folder {target} already exists and is not empty")
    elif target.exists():
        raise BadInput(f"output {target} already exists; remove it or choose another name")
    return target


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to `target` if the block succeeds."""
    target = Path(target)
    tmp = _temp_name(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; rename it to `target` (absent or empty) on success."""
    target = Path(target)
    tmp = _temp_name(target)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if target.is_dir():
            target.rmdir()  # only an empty folder reaches here (see check_new_output)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
