"""The layers docs/architecture.md states, enforced: import-linter's layers contract (pyproject.toml)
over every import, function-level ones included, and no module importing another's private name."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "edgesmith"


def test_import_linter_layers_contract_is_kept():
    exe = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(exe), "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def private_imports(pkg: Path = PKG) -> list[str]:
    """``from a.b import _name`` of another module, and private modules (``_x``) imported from outside
    their own package."""
    found = []
    for path in sorted(pkg.rglob("*.py")):
        me = _module_name(path)
        my_pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module or not node.module.startswith("edgesmith"):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{me}: from {node.module} import {alias.name}")
            parts = node.module.split(".")
            for i, part in enumerate(parts):
                owner = ".".join(parts[:i])
                if part.startswith("_") and not (my_pkg == owner or my_pkg.startswith(owner + ".")):
                    found.append(f"{me}: imports private module {node.module}")
    return found


def test_no_module_imports_another_modules_private_name():
    assert private_imports() == []


def test_the_private_name_check_catches_a_violation(tmp_path):
    pkg = tmp_path / "edgesmith"
    (pkg / "a").mkdir(parents=True)
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "_inner.py").write_text("def helper(): pass\n_secret = 1\n")
    (pkg / "b.py").write_text("from edgesmith.a._inner import helper\nfrom edgesmith.a._inner import _secret\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = private_imports(pkg)
    finally:
        ROOT = saved
    assert found == ["edgesmith.b: imports private module edgesmith.a._inner", "edgesmith.b: from edgesmith.a._inner import _secret",
                     "edgesmith.b: imports private module edgesmith.a._inner"]


def test_no_file_over_600_lines_and_no_long_function_in_the_core():
    long_files = [str(p.relative_to(ROOT)) for p in PKG.rglob("*.py") if len(p.read_text().splitlines()) > 600]
    assert long_files == []
    core = [PKG / "pipeline.py", PKG / "tune.py", *(PKG / "evaluate").glob("*.py"), *(PKG / "optimize").glob("*.py")]
    long_functions = []
    for path in core:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long_functions.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long_functions == []
