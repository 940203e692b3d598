"""The asr package imports without cycles: every module alone in a fresh interpreter, and a walk of every
import statement (function-level ones too, where a cycle would otherwise hide)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(f"asr.{p.stem}" for p in (ROOT / "asr").glob("*.py") if p.stem != "__init__")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def asr_imports(module: str) -> set[str]:
    """The asr modules that `module` imports anywhere in its body (not under `if TYPE_CHECKING:`)."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("asr."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "asr":  # from asr import audio: a submodule
                found.update(f"asr.{a.name}" for a in node.names if f"asr.{a.name}" in MODULES)
            elif node.module.startswith("asr."):
                found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found - {module}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_hidden_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_among_asr_modules():
    graph = {module: asr_imports(module) for module in MODULES}
    assert all(target in MODULES for targets in graph.values() for target in targets), graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


@pytest.mark.parametrize("module", ["asr.text", "asr.bpe", "asr.tokenizers"])
def test_text_and_tokenizer_modules_import_alone(module):
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, check=True)


@pytest.mark.slow
def test_every_asr_module_imports_alone_in_a_fresh_interpreter():
    procs = {
        m: subprocess.Popen([sys.executable, "-c", f"import {m}"], cwd=ROOT, stderr=subprocess.PIPE) for m in MODULES
    }
    failed = {m: p.communicate()[1].decode()[-500:] for m, p in procs.items() if p.wait() != 0}
    assert not failed, failed
