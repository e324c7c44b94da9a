"""A streamed merge drops the file pages it has read: `release_pages` on the readers' views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from genome.formats.safetensors_io import SafetensorsModel
from genome.recombine.task import release_pages

MB = 1 << 20


def _rss_file_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    pytest.skip("no RssFile in /proc/self/status")


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "m.safetensors"
    save_file({"w": np.random.default_rng(0).random((4096, 1024), dtype=np.float32)}, str(path))  # 16 MB
    return path


def _touch_then_release(view: np.ndarray) -> tuple[int, int]:
    """(bytes release_pages advised, KiB of file-backed RSS it gave back)."""
    assert float(view.sum()) > 0  # maps every page in
    before = _rss_file_kb()
    released = release_pages(view)
    return released, before - _rss_file_kb()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssFile from /proc")
def test_pages_of_the_safetensors_reader_are_released(model_file: Path) -> None:
    reader = SafetensorsModel(model_file)
    view = reader.raw("w")[MB: 13 * MB]  # np.frombuffer(mmap) slices end in a memoryview
    released, dropped_kb = _touch_then_release(view)
    assert released >= 12 * MB
    assert dropped_kb * 1024 >= 8 * MB
    reader.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssFile from /proc")
def test_pages_of_an_offset_np_memmap_are_released(model_file: Path) -> None:
    mapped = np.memmap(model_file, np.uint8, mode="r", offset=5000)
    released, dropped_kb = _touch_then_release(mapped[10: 8 * MB])
    assert released >= 8 * MB - 10
    assert dropped_kb * 1024 >= 5 * MB


def test_arrays_not_backed_by_a_file_are_left_alone() -> None:
    assert release_pages(np.ones(1 << 16)) == 0
    assert release_pages(np.frombuffer(bytearray(4096), np.uint8)) == 0
