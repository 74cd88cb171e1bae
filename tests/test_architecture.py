"""Structural rules of the package: small compiled signatures, no import cycles."""

import ast
import importlib
import inspect
import pkgutil

from numba.core.registry import CPUDispatcher

import sim
from tests.conftest import ROOT


def test_no_compiled_function_takes_more_than_ten_arguments():
    """Kernels take a few typed records, not dozens of positional floats."""
    wide = []
    for info in pkgutil.walk_packages(sim.__path__, "sim."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == module.__name__:
                n = len(inspect.signature(obj.py_func).parameters)
                if n > 10:
                    wide.append(f"{info.name}.{name} ({n})")
    assert not wide, wide


def _imports(path) -> set[str]:
    """Modules of ``sim`` a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sim":
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "sim")
    return found


def test_no_import_cycle_inside_sim():
    """Also counting imports deferred into functions: a cycle there is still two modules that need each other."""
    paths = (ROOT / "sim").rglob("*.py")
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in paths}
    graph = {m: {d for d in _imports(p) if d in files and d != m} for m, p in files.items()}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> list[str] | None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return [*stack[stack.index(d) :], d] if d in stack else [m, d]
            if d not in state and (cycle := visit(d, [*stack, d])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m, [m])
            assert cycle is None, " -> ".join(cycle)


def test_the_model_imports_neither_workflows_nor_verification():
    """The layout's direction: workflows and verification use the model, never the reverse."""
    top = ("model", "scenario", "params", "patient", "antigens", "readouts", "clinical", "outcomes")
    model = [*(ROOT / "sim" / "core").rglob("*.py"), *(ROOT / "sim" / f"{m}.py" for m in top)]
    wrong = {
        str(p.relative_to(ROOT)): sorted(d for d in _imports(p) if d.startswith(("sim.workflows", "sim.verify"))) for p in model
    }
    assert not {p: d for p, d in wrong.items() if d}
