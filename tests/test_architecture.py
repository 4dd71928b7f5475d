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
    assert found == [
        "edgesmith.b: imports private module edgesmith.a._inner",
        "edgesmith.b: from edgesmith.a._inner import _secret",
        "edgesmith.b: imports private module edgesmith.a._inner",
    ]


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


ROOT = PKG.parent


def _named_in_architecture() -> tuple[list[str], list[str]]:
    """Module names (`edgesmith.x`, or a bare `x` in the layers table) and file paths (`evaluate/judge.py`) the
    architecture page names."""
    import re

    text = (ROOT / "docs" / "architecture.md").read_text()
    groups = {"edgesmith.passes", "edgesmith.backends", "edgesmith.custom_ops"}  # entry-point groups, not modules
    modules = [m for m in re.findall(r"`(edgesmith(?:\.\w+)+)`", text) if m not in groups and not m.split(".")[-1][0].isupper()]  # nor op domains
    table = [row.split("|")[2] for row in text.splitlines() if row.startswith("| ") and row.count("|") >= 4][1:]
    modules += [f"edgesmith.{m}" for cell in table for m in re.findall(r"`(\w+)`", cell) if m != "edgesmith"]
    paths = re.findall(r"\b((?:[a-z_]+/)*[a-z_]+\.py)\b", text) + re.findall(r"\b([a-z_]+/)(?=[\s(,)])", text)
    return modules, paths


def test_the_architecture_page_names_only_modules_that_exist():
    import importlib.util

    modules, paths = _named_in_architecture()
    assert len(modules) > 20 and len(paths) > 20, "the page should name the modules it draws"
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
    gone = [
        p for p in paths if not any((base / p).exists() for base in (PKG, ROOT, PKG / "compress", PKG / "compress" / "prune", PKG / "runtime", PKG / "search"))
    ]
    assert not gone, f"docs/architecture.md names files that do not exist: {gone}"


def test_every_relative_link_in_the_docs_resolves():
    import re

    broken = []
    for md in [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", md.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (md.parent / target).exists():
                broken.append(f"{md.relative_to(ROOT)} -> {target}")
    assert not broken, f"links to missing files: {broken}"


def test_the_recipe_goes_back_up_at_most_ten_times_from_the_cli_through_a_run(digits_onnx, tmp_path):
    """Issue 23's measure (benchmarks/recipe_trace.py): every call that receives the Recipe, from the CLI
    through a whole run; an entry into a higher layer than the last one's is the recipe going back up."""
    from benchmarks.recipe_trace import layer_of, layers, trace_run

    assert layer_of("edgesmith.cli.common", layers()) == 0 and layer_of("edgesmith.data.run_data", layers()) > layer_of("edgesmith.pipeline", layers())
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {{source: {digits_onnx}}}\npasses: [{{type: ptq_int8}}]\ndata: {{calibration: {{source: digits, split: train, samples: 256}}, evaluation: {{source: digits, split: test}}}}\nmetric: top1\n"
        "targets: [{profile: x86-avx512-vnni-ort, batch_sizes: [1]}]\n"
    )
    t = trace_run(["run", str(recipe), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "manifest.json").is_file(), "the traced run did not finish"
    assert "edgesmith.pipeline" in t.entries and "edgesmith.plan" in t.entries  # the trace saw the recipe go down
    assert len(t.ups) <= 10, t.ups


# Function-level imports are for what must stay lazy (docs/architecture.md "Imports"): the heavy or optional
# libraries, the zoo (its networks are torch modules), the CLI (start-up: `--help` and completion), child-process
# entry points (they import what the job needs), `import edgesmith` itself, and the four named import cycles.
LAZY_LIBRARIES = {
    "torch", "onnx", "onnxruntime", "openvino", "nncf", "optuna", "ray", "transformers", "tokenizers", "pyarrow", "PIL", "safetensors", "sklearn",
    "neural_compressor", "tensorrt", "cuda", "mlflow", "datasets", "onnxscript", "torch_pruning", "onnxruntime_extensions", "rich", "scipy",
    "sqlalchemy", "asyncssh", "fcntl", "resource", "ctypes", "matplotlib", "easyocr_en_models", "ml_dtypes",
}  # fmt: skip
LAZY_FILES = (
    "edgesmith/cli/",
    "edgesmith/runtime/bench_worker.py",
    "edgesmith/search/worker.py",
    "edgesmith/search/zygote.py",
    "edgesmith/runtime/ops/ortx.py",
    # the device agent: a child-process entry point that must answer "which modules import here?" on a
    # device that may lack numpy or yaml (before `edgesmith device setup`), so it imports only as it goes
    "edgesmith/device/agent.py",
    "edgesmith/device/ops.py",
)
CYCLES = {
    ("edgesmith/__init__.py", "edgesmith"),  # the API loads on first use: `import edgesmith` stays light
    ("edgesmith/data/sources.py", "edgesmith.data.stream"),
    ("edgesmith/data/stream.py", "edgesmith.data.sources"),
    ("edgesmith/runtime/base.py", "edgesmith.runtime.bench"),
    ("edgesmith/runtime/bench.py", "edgesmith.runtime"),
}


def function_level_imports() -> list[str]:
    """Imports inside functions that are none of the documented lazy kinds."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(LAZY_FILES):
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                module = (node.module or "") if isinstance(node, ast.ImportFrom) else node.names[0].name
                if module.split(".")[0] in LAZY_LIBRARIES or module.startswith("edgesmith.zoo") or (rel, module) in CYCLES:
                    continue
                found.append(f"{rel}:{node.lineno} {module}")
    return found


def test_imports_are_at_module_top_except_the_documented_lazy_ones():
    assert function_level_imports() == []


def test_the_import_check_can_fail(tmp_path, monkeypatch):
    (tmp_path / "edgesmith").mkdir()
    (tmp_path / "edgesmith" / "m.py").write_text("def f():\n    import json\n    import torch\n    from edgesmith.zoo import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", tmp_path / "edgesmith")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert function_level_imports() == ["edgesmith/m.py:2 json"]


# machine-readable output (JSON for --json, YAML of a profile, the bench worker's and the device scripts' protocol) and standalone scripts
RAW_OUTPUT_OK = ("edgesmith/terminal.py", "edgesmith/runtime/bench_worker.py", "edgesmith/remote/scripts.py", "edgesmith/zoo/train_digits.py")


def direct_terminal_writes() -> list[str]:
    """``print(...)`` of anything but JSON, and ``rich.console.Console`` made outside edgesmith/terminal.py: text that
    skips ``errors.shown`` (a terminal escape in a file name reached the bench table's title)."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in RAW_OUTPUT_OK:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr if isinstance(node.func, ast.Attribute) else ""
            is_json = bool(node.args) and any(f in ast.unparse(node.args[0])[:40] for f in ("json.dumps", "yaml.safe_dump"))  # escaped by both
            if (name == "print" and isinstance(node.func, ast.Name) and not is_json) or name == "Console":
                found.append(f"{rel}:{node.lineno} {name}")
    return found


def test_everything_written_for_a_person_goes_through_the_terminal_module():
    assert direct_terminal_writes() == []


def test_the_terminal_write_check_can_fail(tmp_path, monkeypatch):
    (tmp_path / "edgesmith").mkdir()
    (tmp_path / "edgesmith" / "m.py").write_text("import json\nprint(json.dumps({}))\nprint(f'written to {p}')\nrich.console.Console().print('x')\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", tmp_path / "edgesmith")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert direct_terminal_writes() == ["edgesmith/m.py:3 print", "edgesmith/m.py:4 Console"]
