"""Imports point one way (README, "Layout"): cli -> defs / report / webhook -> pipeline
-> sources / warehouse / models / quality -> demo -> config / records and the leaves
(text, privacy, progress). A module may import its own layer and the layers below it,
never one above; and no source imports the warehouse, the models or the checks (a
source returns records, the pipeline loads them). The imports are read with ``ast``
(function-level imports included), so nothing is imported to check them."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import dora_pipeline

PACKAGE = "dora_pipeline"
# Top-level module or package of dora_pipeline -> its layer (higher imports lower).
LAYERS = {
    "__init__": 0,
    "config": 0,
    "records": 0,
    "text": 0,
    "privacy": 0,
    "progress": 0,
    "demo": 1,
    "sources": 2,
    "warehouse": 2,
    "models": 2,
    "quality": 2,
    "pipeline": 3,
    "defs": 4,
    "report": 4,
    "webhook": 4,
    "cli": 5,
}
# What a source must never import: it returns records, it does not write or build.
NOT_FROM_SOURCES = ("warehouse", "models", "quality")


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path, path: Path, known: set[str]) -> Iterator[tuple[int, str]]:
    """(line, absolute module) of every import of ``PACKAGE`` in ``path``."""
    module = _module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                # `from . import privacy` imports the module dora_pipeline.privacy.
                sub = f"{target}.{alias.name}"
                yield node.lineno, sub if sub in known else target


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def violations(
    module: str, imported: Iterable[tuple[int, str]], where: str | None = None
) -> list[str]:
    """What in ``imported`` breaks the layering, one message per import naming the file,
    the line and the import. An area missing from LAYERS is itself a violation."""
    where = where or module
    area = _area(module)
    found = []
    if area not in LAYERS:
        return [f"{where}: {PACKAGE}.{area} has no layer in tests/test_layout.py LAYERS"]
    for line, target in imported:
        other = _area(target)
        if other not in LAYERS:
            found.append(f"{where}:{line}: imports {target}, whose package has no layer in LAYERS")
        elif LAYERS[other] > LAYERS[area]:
            found.append(
                f"{where}:{line}: imports {target} (layer {LAYERS[other]}, {other}) from layer "
                f"{LAYERS[area]} ({area}): imports must point down"
            )
        elif area == "sources" and other in NOT_FROM_SOURCES:
            found.append(
                f"{where}:{line}: a source imports {target}: sources never touch the {other}"
            )
    return found


def scan(root: Path) -> list[str]:
    """Every violation in the package at ``root``."""
    files = sorted(root.rglob("*.py"))
    known = {_module_name(root, p) for p in files}
    found = []
    for path in files:
        module = _module_name(root, path)
        rel = path.relative_to(root.parent)
        found += violations(module, imports(root, path, known), str(rel))
    return found


def test_imports_point_one_way():
    root = Path(dora_pipeline.__file__).parent
    found = scan(root)
    assert not found, "\n".join(found)


def test_the_rule_names_an_upward_import_and_a_source_importing_the_warehouse():
    assert violations("dora_pipeline.models.engine", [(7, "dora_pipeline.pipeline")]) == [
        "dora_pipeline.models.engine:7: imports dora_pipeline.pipeline (layer 3, pipeline) from "
        "layer 2 (models): imports must point down"
    ]
    assert violations("dora_pipeline.sources.argocd", [(26, "dora_pipeline.warehouse.loader")]) == [
        "dora_pipeline.sources.argocd:26: a source imports dora_pipeline.warehouse.loader: "
        "sources never touch the warehouse"
    ]
    assert violations("dora_pipeline.config", [(3, "dora_pipeline.defs.assets")])
    assert violations("dora_pipeline.newthing", []) != []
    # Downward and sideways imports are fine.
    assert (
        violations(
            "dora_pipeline.defs.assets", [(1, "dora_pipeline.pipeline"), (2, "dora_pipeline.text")]
        )
        == []
    )
    assert violations("dora_pipeline.models.engine", [(1, "dora_pipeline.warehouse")]) == []


def test_a_package_with_violations_fails_the_scan_naming_file_and_import(tmp_path):
    root = tmp_path / PACKAGE
    (root / "sources").mkdir(parents=True)
    (root / "warehouse").mkdir()
    (root / "__init__.py").write_text("")
    (root / "config.py").write_text("def f():\n    from .cli import main\n")
    (root / "cli.py").write_text("from . import config\n")
    (root / "warehouse" / "__init__.py").write_text("")
    (root / "warehouse" / "loader.py").write_text("from ..records import Record\n")
    (root / "records.py").write_text("Record = object\n")
    (root / "sources" / "__init__.py").write_text("")
    (root / "sources" / "vendor.py").write_text(
        "from ..records import Record\nfrom ..warehouse import loader\nimport dora_pipeline.pipeline\n"
    )
    (root / "pipeline.py").write_text("")
    found = scan(root)
    assert found == [
        f"{PACKAGE}/config.py:2: imports {PACKAGE}.cli (layer 5, cli) from layer 0 (config): "
        "imports must point down",
        f"{PACKAGE}/sources/vendor.py:2: a source imports {PACKAGE}.warehouse.loader: "
        "sources never touch the warehouse",
        f"{PACKAGE}/sources/vendor.py:3: imports {PACKAGE}.pipeline (layer 3, pipeline) from "
        "layer 2 (sources): imports must point down",
    ]
