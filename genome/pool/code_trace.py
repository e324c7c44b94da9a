"""L3 for code: run functions on seeded inputs in a locked-down child process; the trace is what
each call returned (its repr) or raised (the exception type).

Only functions that pass a static check run: no imports, no global/nonlocal, no classes, no
generators or coroutines, no ``with``, no names or attributes starting with ``_``, no
``format``/``format_map`` attributes (format strings can walk attributes), and calls only to
whitelisted builtins, the function's own parameters and locals, and attribute methods of values.
The child runs with those builtins only, a line budget per call (sys.settrace), and resource
limits: 1 GiB of address space, 20 s of CPU, no files written (RLIMIT_FSIZE = 0). A function
that never returns normally on any input gets no L3 key.

Run as ``python -m genome.pool.code_trace``: JSON list of sources on stdin, JSON list of
``[outcome, ...] | null`` on stdout.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys

SAFE_BUILTINS = (
    "abs", "all", "any", "bool", "chr", "dict", "divmod", "enumerate", "filter", "float", "frozenset", "int",
    "isinstance", "len", "list", "map", "max", "min", "ord", "pow", "range", "repr", "reversed", "round",
    "set", "sorted", "str", "sum", "tuple", "zip", "ArithmeticError", "Exception", "IndexError", "KeyError",
    "TypeError", "ValueError", "ZeroDivisionError", "True", "False", "None",
)
_FORBIDDEN = (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal, ast.ClassDef, ast.Yield, ast.YieldFrom,
              ast.Await, ast.AsyncFunctionDef, ast.With, ast.AsyncWith, ast.AsyncFor)
_LINE_BUDGET = 20_000
_CALLS = 8
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def runnable(source: str) -> bool:
    """True if the static check lets this (normalised, single-function) source run."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef):
        return False
    fn = tree.body[0]
    if fn.decorator_list or fn.args.vararg or fn.args.kwarg or len(fn.args.args) > 4:
        return False
    local = {a.arg for a in fn.args.args + fn.args.kwonlyargs + fn.args.posonlyargs}
    for node in ast.walk(fn):
        if isinstance(node, (ast.Name, ast.arg)) and isinstance(getattr(node, "ctx", ast.Store()), ast.Store):
            local.add(node.id if isinstance(node, ast.Name) else node.arg)
        elif isinstance(node, ast.FunctionDef):
            local.add(node.name)
    for node in ast.walk(fn):
        if isinstance(node, _FORBIDDEN):
            return False
        if isinstance(node, ast.Attribute) and (node.attr.startswith("_") or node.attr in ("format", "format_map")):
            return False
        if isinstance(node, ast.Name) and (node.id.startswith("_") and node.id != "_" or
                                           (isinstance(node.ctx, ast.Load) and node.id not in local
                                            and node.id not in SAFE_BUILTINS)):
            return False
    return True


def inputs(n_args: int) -> list[tuple]:
    """Seeded argument tuples: small ints, floats, strings, lists, and mixes."""
    import random

    rng = random.Random(1234 + n_args)
    pools = [
        lambda: rng.randint(-10, 10), lambda: rng.randint(0, 100), lambda: round(rng.uniform(-5, 5), 3),
        lambda: "".join(rng.choice("abcxyz ") for _ in range(rng.randint(0, 6))),
        lambda: [rng.randint(-5, 5) for _ in range(rng.randint(0, 5))],
    ]
    out = []
    for call in range(_CALLS):  # the first calls pass one type to every argument, the rest mix types
        out.append(tuple(pools[(call if call < len(pools) else call + k) % len(pools)]() for k in range(n_args)))
    return out


def _run_one(source: str) -> list[str] | None:
    import builtins as bi
    import copy

    builtins = {name: getattr(bi, name) for name in SAFE_BUILTINS if hasattr(bi, name)}
    scope: dict = {"__builtins__": builtins}
    exec(compile(source, "<gene>", "exec"), scope)  # noqa: S102 - statically checked, sandboxed child
    fn = next(v for k, v in scope.items() if k != "__builtins__")
    n_args = fn.__code__.co_argcount - len(fn.__defaults__ or ())
    outcomes, any_ok = [], False
    for args in inputs(n_args):
        budget = [_LINE_BUDGET]

        def tracer(frame, event, arg, budget=budget):
            budget[0] -= 1
            if budget[0] < 0:
                raise TimeoutError("line budget")
            return tracer

        sys.settrace(tracer)
        try:
            result = fn(*copy.deepcopy(args))
            outcomes.append("ok:" + _ADDRESS.sub(" at 0x?", repr(result))[:500])
            any_ok = True
        except RecursionError:
            outcomes.append("err:RecursionError")
        except Exception as err:  # noqa: BLE001 - the trace records what was raised
            outcomes.append("err:" + type(err).__name__)
        finally:
            sys.settrace(None)
    return outcomes if any_ok else None


def _child() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    resource.setrlimit(resource.RLIMIT_CPU, (20, 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    sys.setrecursionlimit(200)
    sources = json.loads(sys.stdin.read())
    results = []
    for src in sources:
        try:
            results.append(_run_one(src) if runnable(src) else None)
        except MemoryError:
            results.append(None)
        except Exception:  # noqa: BLE001 - a function that cannot even be defined gets no trace
            results.append(None)
    sys.stdout.write(json.dumps(results))


def traces(sources: list[str], timeout: float = 60.0) -> list[list[str] | None]:
    """Traces of many normalised function sources, computed in one sandboxed child process."""
    if not sources:
        return []
    env = {"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "")}
    try:
        done = subprocess.run([sys.executable, "-I", "-m", "genome.pool.code_trace"], input=json.dumps(sources),
                              capture_output=True, text=True, timeout=timeout, env=env, check=False,
                              cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        out = json.loads(done.stdout) if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, json.JSONDecodeError):
        out = None
    if out is None or len(out) != len(sources):
        return [None] * len(sources)
    return out


if __name__ == "__main__":
    _child()
