"""Code genes: L1 normalised source, L2 bytecode, L3 execution trace; the sandbox refuses unsafe code."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from genome.errors import BadInput
from genome.pool import GenePool
from genome.pool.code_genes import bytecode_key, functions, normalise
from genome.pool.code_trace import runnable, traces

ORIGINAL = '''
def add(a, b):
    """Sum of two things."""
    return a + b  # plain

def total(xs):
    s = 0
    for x in xs:
        s += x
    return s

def danger(path):
    import os
    return os.listdir(path)
'''

VARIANTS = '''
def plus(a, b):
    # same code, another name, no docstring, other layout
    return (a +
            b)

def add_renamed(x, y):
    return x + y

def total_builtin(values):
    return sum(values) if isinstance(values, list) else sum(v for v in values)

class Helper:
    def spin(self, n):
        while True:
            n += 1
'''


def _tree(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "mod.py").write_text(textwrap.dedent(text))
    (folder / "broken.py").write_text("def oops(:\n")
    return folder


def test_levels_of_code_genes(tmp_path):
    a, b = _tree(tmp_path, "a", ORIGINAL), _tree(tmp_path, "b", VARIANTS)
    pool = GenePool.init(tmp_path / "pool")
    first = pool.ingest_code(a)
    assert first.genes_in == 3 and first.unique(3) == 3
    second = pool.ingest_code(b)
    rows = {name: levels[0] for name, levels in pool.db.execute("SELECT name, levels FROM tensors WHERE model = 2")}
    assert rows == {"plus": 1, "add_renamed": 2, "total_builtin": 3, "Helper.spin": 0}
    assert second.collapsed == {1: 1, 2: 1, 3: 1, 4: 0} and second.unique(3) == 1
    meta = pool.db.execute("SELECT metadata FROM models WHERE name = 'b'").fetchone()[0]
    assert "broken.py" in meta  # files that do not parse are listed, not fatal


def test_normalised_source_and_bytecode_keys():
    import ast

    fn = ast.parse(textwrap.dedent(ORIGINAL)).body[0]
    assert normalise(fn) == "def _(a, b):\n    return a + b"
    assert bytecode_key("def _(a, b):\n    return a + b") == bytecode_key("def _(x, y):\n    return x + y")
    assert bytecode_key("def _(a, b):\n    return a + b") != bytecode_key("def _(a, b):\n    return a - b")


def test_sandbox_runs_pure_functions_only():
    safe = "def _(a, b):\n    return a * 2 + b"
    unsafe = ["def _(p):\n    import os\n    return os.getcwd()", "def _(x):\n    return x.__class__",
              "def _(x):\n    return open('f', 'w')", "def _(x):\n    return '{0.__class__}'.format(x)",
              "def _(x):\n    return eval('1')"]
    assert runnable(safe) and not any(runnable(u) for u in unsafe)
    looping = "def _(n):\n    while True:\n        n += 1"
    bomb = "def _(n):\n    return [0] * 10 ** 10"
    out = traces([safe, looping, bomb, unsafe[0]])
    assert out[0][0].startswith("ok:") and out[1] is None and out[2] is None and out[3] is None


def test_missing_or_empty_source_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="no such"):
        functions(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no Python files"):
        functions(tmp_path / "empty")
