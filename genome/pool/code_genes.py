"""Code genes: every Python function of a source tree, deduplicated on three levels.

- L1 normalised source: the function's AST unparsed with its name replaced by ``_`` and every
  docstring removed (comments and formatting never survive `ast.unparse`), so the same code under
  another name, layout or documentation collapses.
- L2 bytecode: the compiled function's instructions, constants, names and argument counts, but
  not its local variable names, so a function that only renames locals collapses.
- L3 execution trace: what the function returns or raises on seeded inputs
  (`genome.pool.code_trace`, run in a sandboxed child process), so different implementations of
  the same behaviour collapse. Functions the sandbox will not run get no L3 key.

A collapsed function references the gene of the first implementation seen; the pool keeps one
implementation per equivalence class (code is deduplicated, not exported).
"""

from __future__ import annotations

import ast
import copy
import json
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from genome.errors import BadInput
from genome.pool.codecs import ZSTD
from genome.pool.gene import Gene, gene_hash
from genome.pool.index import PoolIndex
from genome.pool.options import IngestReport
from genome.pool.session import ModelRecord, Session

_SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "node_modules", ".tox", "build", "dist"}


@dataclass(frozen=True)
class CodeUnit:
    """One function: where it is, its original text size and its normalised source."""

    module: str
    qualname: str
    source_bytes: int
    normalised: str


class _StripDocstrings(ast.NodeTransformer):
    def _strip(self, node: Any) -> Any:
        self.generic_visit(node)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _strip


def normalise(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """Source of a function without docstrings and comments, its name replaced by ``_``."""
    fn = _StripDocstrings().visit(copy.deepcopy(node))
    fn.name = "_"
    return ast.unparse(ast.fix_missing_locations(fn))


def functions(root: Path) -> tuple[list[CodeUnit], list[str]]:
    """Every function (methods and nested ones too) of every ``*.py`` under `root`.

    Returns:
        (units in file order, files that could not be parsed).
    """
    root = Path(root)
    if not root.exists():
        raise BadInput(f"no such file or folder: {root}")
    files = [root] if root.is_file() else sorted(
        p for p in root.rglob("*.py") if not (_SKIP_DIRS & set(p.relative_to(root).parts[:-1])))
    if not files or (root.is_file() and root.suffix != ".py"):
        raise BadInput(f"{root}: no Python files (*.py) found; expected a model or a source folder")
    units, broken = [], []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text, filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            broken.append(str(path))
            continue
        module = str(path.relative_to(root) if root.is_dir() else path.name)
        for node, qual in _walk(tree, ""):
            segment = ast.get_source_segment(text, node) or ""
            units.append(CodeUnit(module, qual, len(segment.encode()), normalise(node)))
    return units, broken


def _walk(node: ast.AST, prefix: str) -> list[tuple[ast.AST, str]]:
    out = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            qual = f"{prefix}{child.name}"
            out.append((child, qual))
            out += _walk(child, qual + ".<locals>.")
        elif isinstance(child, ast.ClassDef):
            out += _walk(child, f"{prefix}{child.name}.")
        else:
            out += _walk(child, prefix)
    return out


def _code_digest(code: types.CodeType, h: Any) -> None:
    h.update(code.co_code)
    h.update(f"|{code.co_argcount}|{code.co_posonlyargcount}|{code.co_kwonlyargcount}|{code.co_flags}|".encode())
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_digest(const, h)
        else:
            h.update(repr(const).encode())


def bytecode_key(normalised: str) -> str | None:
    """L2 key: BLAKE3 of the compiled function without local names, file or line numbers."""
    try:
        module = compile(normalised, "<gene>", "exec")
    except (SyntaxError, ValueError):
        return None
    code = next((c for c in module.co_consts if isinstance(c, types.CodeType)), None)
    if code is None:
        return None
    h = blake3.blake3(b"L2code|")
    _code_digest(code, h)
    return h.hexdigest()


def trace_key(trace: list[str] | None) -> str | None:
    return None if trace is None else blake3.blake3(b"L3code|" + json.dumps(trace).encode()).hexdigest()


class CodeIngest:
    """Ingest every function of a source tree (see the module docstring)."""

    def __init__(self, pool: Any, session: Session, opts: Any, root: Path, name: str) -> None:
        self.pool, self.session, self.opts, self.root, self.name = pool, session, opts, root, name
        level = min(opts.max_level, 3)
        self.index = PoolIndex(pool.db, "code", level, int(pool.config["bands"]), int(pool.config["rows"]))
        self.report = IngestReport(name=name, kind="code")

    def run(self) -> tuple[ModelRecord, IngestReport]:
        from genome.pool.code_trace import traces

        t0 = time.perf_counter()
        units, broken = functions(self.root)
        record = ModelRecord(self.name, "code", str(self.root), "python", None, {"unparsed_files": broken})
        payloads = [u.normalised.encode() for u in units]
        digests = [blake3.blake3(p).digest() for p in payloads]
        ghash = [gene_hash("code", "py", (), d) for d in digests]
        self.index.prefetch([bytes.fromhex(g) for g in ghash])
        level = self.opts.max_level
        l2 = [bytecode_key(u.normalised) if level >= 2 and g not in self.index else None
              for u, g in zip(units, ghash)]
        need = [i for i, g in enumerate(ghash) if level >= 3 and g not in self.index
                and (l2[i] is None or l2[i] not in self.index.l2)]
        l3: list[str | None] = [None] * len(units)
        for i, t in zip(need, traces([units[i].normalised for i in need])):
            l3[i] = trace_key(t)
            self.report.not_executed += t is None
        for i, unit in enumerate(units):
            rep, lev = self._cascade(i, unit, payloads[i], digests[i], ghash[i], l2[i], l3[i])
            self.session.ref(rep)
            record.add_tensor(i, unit.qualname, unit.module, "py", [], unit.source_bytes, [rep], [lev])
            self.report.genes_in += 1
            self.report.bytes_before += unit.source_bytes
            if lev:
                self.report.collapsed[lev] += 1
        self.report.seconds = time.perf_counter() - t0
        self.report.bytes_after = self.session.stored
        record.nbytes = self.report.bytes_before
        record.stats = self.report.as_dict()
        return record, self.report

    def _cascade(self, i: int, unit: CodeUnit, payload: bytes, digest: bytes, g: str, l2: str | None,
                 l3: str | None) -> tuple[str, int]:
        idx = self.index
        if g in idx:
            return g, 1
        if l2 is not None and l2 in idx.l2:
            return idx.l2[l2], 2
        if l3 is not None and l3 in idx.l3:
            return idx.l3[l3], 3
        self.session.put_blob(digest.hex(), payload, ZSTD)
        gene = Gene(g, "code", digest.hex(), "py", (), {k: v for k, v in ((2, l2), (3, l3)) if v},
                    {"source": self.name, "module": unit.module, "function": unit.qualname})
        self.session.add_gene(gene, None, len(payload))
        idx.add(g, (), l2, l3, None)
        self.report.full_genes += 1
        return g, 0
