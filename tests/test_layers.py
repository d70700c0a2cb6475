"""The layers keep their order: the connector layer (ndpipe/services) imports no op, command,
pipeline, CLI or API module, so a service can be used, and tested, without them.

Read from the source with `ast` (nothing is imported), so an import hidden in a function body
or under TYPE_CHECKING counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "ndpipe" / "services"
# The modules above the connector layer, and the packages of them.
FORBIDDEN = ("ndpipe.ops", "ndpipe.commands", "ndpipe.pipeline", "ndpipe.cli", "ndpipe.api")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every module SOURCE imports, relative imports resolved against
    MODULE; `from X import Y` counts as importing X and X.Y (Y may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def forbidden(names: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [
        (line, name)
        for line, name in names
        if any(name == layer or name.startswith(layer + ".") for layer in FORBIDDEN)
    ]


SERVICE_MODULES = sorted(SERVICES.rglob("*.py"))


def test_there_are_service_modules_to_check():
    names = {module_name(path) for path in SERVICE_MODULES}
    assert {"ndpipe.services.http", "ndpipe.services.jobs", "ndpipe.services.auth0.client"} <= names


@pytest.mark.parametrize("path", SERVICE_MODULES, ids=lambda path: module_name(path))
def test_a_service_module_imports_no_higher_layer(path):
    names = imported(path.read_text(encoding="utf-8"), module_name(path), path.stem == "__init__")
    found = forbidden(names)
    where = path.relative_to(ROOT)
    assert not found, "\n".join(f"{where}:{line} imports {name}" for line, name in found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import ndpipe.ops.select", {"ndpipe.ops.select"}),
        ("from ndpipe.pipeline import plural", {"ndpipe.pipeline", "ndpipe.pipeline.plural"}),
        ("from ndpipe import api", {"ndpipe.api"}),
        ("from ndpipe import cli, errors", {"ndpipe.cli"}),
        (
            "def f():\n    from ndpipe.commands import tenant",
            {"ndpipe.commands", "ndpipe.commands.tenant"},
        ),
        ("if TYPE_CHECKING:\n    from ndpipe.ops import crm", {"ndpipe.ops", "ndpipe.ops.crm"}),
        # In ndpipe.services.auth0.export, .. is ndpipe.services and ... is ndpipe.
        ("from ...ops import head", {"ndpipe.ops", "ndpipe.ops.head"}),
        ("from ... import pipeline", {"ndpipe.pipeline"}),
        ("from ..jobs import JobRunner", set()),
        ("from ndpipe.errors import UsageError\nimport ndpipe.progress", set()),
        ("import ndpipe.operations\nimport ndpipe.apis", set()),  # names that only start alike
    ],
)
def test_the_check_finds_what_it_must(source, expected):
    found = forbidden(imported(source, "ndpipe.services.auth0.export"))
    assert {name for _, name in found} == expected
