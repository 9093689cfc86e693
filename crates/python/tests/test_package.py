"""The installed wheel: where its MLX comes from, and its type stubs."""

import ast
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import saeidx
from support import REPO

PACKAGE = Path(saeidx.__file__).parent


def loaded_libraries() -> set[Path]:
    """The shared libraries mapped into this process."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    return {Path(line.split()[-1]) for line in maps if line.split()[-1].startswith("/")}


def test_mlx_is_the_pypi_runtime_beside_the_package() -> None:
    """libmlx.so comes from the mlx-cpu wheel in this environment's site-packages (the
    extension's $ORIGIN-relative rpath), not from the repository's build runtime."""
    site_packages = Path(sysconfig.get_paths()["platlib"]).resolve()
    assert PACKAGE.resolve().parent == site_packages
    mlx = [path for path in loaded_libraries() if path.name == "libmlx.so"]
    assert [path.resolve() for path in mlx] == [site_packages / "mlx" / "lib" / "libmlx.so"]
    assert (REPO / ".runtime").resolve() not in mlx[0].resolve().parents


def test_mlx_calls_openblas() -> None:
    """Like the saeidx binary, the extension links the system's OpenBLAS ahead of the
    reference BLAS and LAPACK that libmlx.so brings: the dynamic linker binds every
    BLAS/LAPACK symbol of libmlx.so to OpenBLAS."""
    env = dict(os.environ, LD_DEBUG="bindings", LD_BIND_NOW="1")
    done = subprocess.run(
        [sys.executable, "-c", "import saeidx"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # "binding file /.../libmlx.so [0] to /.../libopenblas.so.0 [0]: normal symbol `x'"
    bindings = {}
    for line in done.stderr.splitlines():
        words = line.split()
        if "binding" in words and words[words.index("binding") + 2].endswith("/libmlx.so"):
            bindings[words[-1].strip("`'")] = Path(words[words.index("to") + 1]).name
    assert bindings["cblas_sgemm"] == bindings["sgetrf_"] == "libopenblas.so.0"
    assert not [lib for lib in bindings.values() if lib.startswith(("libblas-", "liblapack-"))]


def stub() -> ast.Module:
    return ast.parse((PACKAGE / "__init__.pyi").read_text())


def test_the_stubs_describe_the_module() -> None:
    assert (PACKAGE / "py.typed").is_file()
    module = stub()
    typed_dicts = set(stubbed_dicts())
    declared = {
        node.name
        for node in module.body
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name not in typed_dicts
    } | {"__version__"}
    exported = {name for name in dir(saeidx.saeidx) if not name.startswith("__")} | {
        "__version__"
    }
    assert declared == exported
    index = next(n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "Index")
    methods = {node.name for node in index.body if isinstance(node, ast.FunctionDef)}
    assert methods == {
        name for name in dir(saeidx.Index) if not name.startswith("_") or name == "__len__"
    }


def stubbed_dicts() -> dict[str, set[str]]:
    """The stub's TypedDicts (class and functional forms) and their keys."""
    dicts = {}
    for node in stub().body:
        if isinstance(node, ast.ClassDef) and any(
            isinstance(base, ast.Name) and base.id == "TypedDict" for base in node.bases
        ):
            dicts[node.name] = {
                item.target.id for item in node.body if isinstance(item, ast.AnnAssign)
            }
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "TypedDict"
        ):
            fields = node.value.args[1]
            dicts[node.targets[0].id] = {key.value for key in fields.keys}
    return dicts


def schema_objects() -> dict[str, set[str]]:
    """Every object type of the answers' JSON Schemas (schemas/answers/), by name."""
    import json

    objects = {}
    for path in (REPO / "schemas" / "answers").glob("*.schema.json"):
        schema = json.loads(path.read_text())
        for name, definition in [(schema["title"], schema), *schema.get("$defs", {}).items()]:
            if "properties" in definition:
                objects[name] = set(definition["properties"])
    return objects


def test_the_stubbed_dicts_are_the_answer_types(index_dir: Path) -> None:
    """Each stubbed dict named like an answer type has that type's fields (from its JSON
    Schema, generated from the Rust type), and the answers have the stubbed keys."""
    dicts, schemas = stubbed_dicts(), schema_objects()
    answer_types = set(dicts) & set(schemas)
    assert answer_types >= {
        "TopTexts", "TextHit", "Snippet", "TopFeatures", "RankedFeature", "PerToken",
        "FeatureReport", "FeatureStats", "QuantileBand", "Neighbour", "Sample", "Info",
        "LabelAnswer", "FeatureLabel", "Explain", "ExplainedFeature", "QueryCounts",
        "Provenance", "LabelScores", "ScoreSummary", "SilentContexts", "LabelReport",
        "FeatureOutcome", "RequestStats",
    }
    for name in answer_types:
        assert dicts[name] == schemas[name], name
    idx = saeidx.open(index_dir)
    assert set(idx.info) == dicts["Info"]
    assert set(idx.feature_stats(0)) == dicts["FeatureStats"]
    assert set(idx.document(0)) == dicts["Document"]
