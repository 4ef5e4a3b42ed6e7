"""The layout of function/ holds as the README's architecture section describes it: layers that import only
downward, no import circle (imports inside functions included), packages whose __init__ only hands names on,
small modules, and a converter that takes nothing from the function but its image decoder."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FUNCTION = ROOT / "function"
# Lower numbers lie further down; a module may import its own package or any lower layer, nothing else.
LAYERS = {
    "function.settings": 0,
    "function.lifecycle": 0,
    "function.metrics": 0,
    "function.lazy_imports": 0,
    "function.model": 1,
    "function.prediction_log": 1,  # beside the model: neither imports the other
    "function.inference": 2,
    "function.quality": 2,  # beside inference: reads the log, the registry for --apply
    "function.protocols": 3,
    "function.http": 4,
    "function.app": 5,
    "function.__main__": 6,
}
MAX_LINES = 300
MAX_TOP_LEVEL_MODULES = 8


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(folder: Path) -> dict[str, Path]:
    return {module_name(path): path for path in sorted(folder.rglob("*.py"))}


FUNCTION_MODULES = modules(FUNCTION)


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """Every module `path` imports, wherever the import statement is (top, function body, TYPE_CHECKING): for
    `from X import Y`, X.Y when that is a module, else X."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                for a in node.names
            }
    return names


def graph() -> dict[str, set[str]]:
    return {
        name: {
            other for other in imported(path, FUNCTION_MODULES) if other in FUNCTION_MODULES and other != name
        }
        for name, path in FUNCTION_MODULES.items()
    }


def layer(name: str) -> tuple[str, int]:
    for prefix, rank in sorted(LAYERS.items(), key=lambda item: -len(item[0])):
        if name == prefix or name.startswith(prefix + "."):
            return prefix, rank
    raise AssertionError(f"{name} is in no layer: add it to the README's layout and to LAYERS")


def test_every_import_points_down_or_within_its_own_package():
    upward = []
    for name, targets in graph().items():
        if name == "function":
            continue
        package, rank = layer(name)
        for target in targets:
            target_package, target_rank = layer(target)
            if target_package != package and target_rank >= rank:
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_there_is_no_import_circle():
    edges, circles = graph(), []

    def visit(name: str, path: list[str]) -> None:
        for target in sorted(edges[name]):
            if target in path:
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in done:
                visit(target, [*path, target])
        done.add(name)

    done: set[str] = set()
    for start in sorted(edges):
        if start not in done:
            visit(start, [start])
    assert circles == []


def test_package_inits_only_hand_names_on():
    for path in FUNCTION.rglob("__init__.py"):
        for node in ast.parse(path.read_text()).body:
            docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            exports = isinstance(node, ast.Assign) and [
                t.id for t in node.targets if isinstance(t, ast.Name)
            ] == ["__all__"]
            assert docstring or exports or isinstance(node, ast.ImportFrom), f"{path}: {ast.dump(node)[:80]}"


@pytest.mark.parametrize("name", sorted(FUNCTION_MODULES))
def test_no_module_is_long(name):
    lines = len(FUNCTION_MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def test_the_top_level_holds_only_the_process_and_its_settings():
    top = sorted(path.name for path in FUNCTION.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    assert {path.name for path in FUNCTION.iterdir() if path.is_dir() and path.name != "__pycache__"} == {
        "model",
        "inference",
        "protocols",
        "http",
        "prediction_log",
        "quality",
    }


def test_the_converter_takes_only_the_decoder_from_the_function():
    used = set()
    for path in (ROOT / "convert").rglob("*.py"):
        used |= {name for name in imported(path, FUNCTION_MODULES) if name.split(".")[0] == "function"}
    assert used == {"function.inference.images"}


def test_the_function_imports_nothing_of_the_converter_or_tensorflow():
    for name, path in FUNCTION_MODULES.items():
        roots = {module.split(".")[0] for module in imported(path, FUNCTION_MODULES)}
        assert not roots & {"convert", "tensorflow", "keras", "tf2onnx"}, name
