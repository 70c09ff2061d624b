"""The import graph of tfrecog runs one way, in layers, and the runtime stays apart from TensorFlow.

Every module of tfrecog/ (and of export/tfrecog_runtime/) is parsed with `ast`: imports at any depth count,
including those inside functions, so a cycle cannot hide in a function body. Each module belongs to one layer of
`LAYERS` (bottom first); a module may import modules of its own layer or of layers below, never above, and the
graph of imports between tfrecog's modules has no cycle. A private name (`_name`) defined in one module is used in
no other: not imported (`from m import _name`), not read as `m._name`, and not called as `obj._name` unless the
module defines that name itself (a subclass overriding a method of its base).
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "tfrecog"
RUNTIME = REPO / "export" / "tfrecog_runtime"

# Bottom first. A module may import from its own layer and the layers below it. Patterns match module names.
LAYERS = [
    ("foundation: TensorFlow set-up, files, version", ["tfrecog._tf", "tfrecog.io", "tfrecog.version",
                                                       "tfrecog.estimates", "tfrecog.checks", "tfrecog.cards",
                                                       "tfrecog.distribute"]),
    ("building blocks: datasets, layers, estimators", ["tfrecog.data", "tfrecog.layers", "tfrecog.layers.*",
                                                      "tfrecog.estimators", "tfrecog.estimators.*"]),
    ("the fused training loop", ["tfrecog.models.trainer"]),
    ("the model base class: the distribution API", ["tfrecog.models.base"]),
    ("model families and their registry", ["tfrecog.models.vae", "tfrecog.models.sbn", "tfrecog.models.dlgm",
                                           "tfrecog.models"]),
    ("tools on a model: evaluation, imputation, figures", ["tfrecog.annealing", "tfrecog.diagnostics",
                                                           "tfrecog.evaluate", "tfrecog.impute", "tfrecog.marginal",
                                                           "tfrecog.plots", "tfrecog.callbacks"]),
    ("run folders: checkpoints, recipes, training from a recipe", ["tfrecog.checkpoints", "tfrecog.recipes",
                                                                  "tfrecog.training"]),
    ("the zoo and export", ["tfrecog.zoo", "tfrecog.export"]),
    ("loading by run folder or zoo name", ["tfrecog.loader"]),
    ("entry points", ["tfrecog.quickstart", "tfrecog.cli", "tfrecog.__main__", "tfrecog"]),
]

HEAVY = ("tensorflow", "keras", "tensorflow_probability", "tf_keras", "tfrecog", "tf2onnx")


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def modules(root: Path, package: str) -> dict[str, Path]:
    return {module_name(p, root, package): p for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by a (possibly relative) `from ... import`."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class Module:
    """What one module imports (tfrecog modules and other top-level packages) and the private names it uses."""

    def __init__(self, name: str, path: Path, known: set[str], root: Path):
        self.name, self.path = name, path
        self.where = path.relative_to(root.parent)  # for messages
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        self.imports: dict[str, int] = {}  # tfrecog module -> first line
        self.external: dict[str, int] = {}  # top-level package -> first line
        self.private_imports: list[tuple[str, str, int]] = []  # (module, name, line)
        self.module_aliases: dict[str, str] = {}  # local name -> tfrecog module
        self.defined: set[str] = set()  # private names this module defines
        self.attributes: list[tuple[str, str, int]] = []  # (object expression, private attribute, line)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self._add(alias.name, node.lineno, known)
                    if alias.name in known:
                        self.module_aliases[alias.asname or alias.name.split(".")[0]] = (
                            alias.name if alias.asname else alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                source = resolve(name, is_package, node)
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    if full in known:  # `from tfrecog import io`: the submodule
                        self._add(full, node.lineno, known)
                        self.module_aliases[alias.asname or alias.name] = full
                    else:  # a name defined in `source`
                        self._add(source, node.lineno, known)
                        if _private(alias.name) and source in known and source != name:
                            self.private_imports.append((source, alias.name, node.lineno))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if _private(node.name):
                    self.defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and _private(node.id):
                self.defined.add(node.id)
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                if isinstance(node.ctx, ast.Store):
                    self.defined.add(node.attr)
                else:
                    self.attributes.append((ast.unparse(node.value), node.attr, node.lineno))

    def _add(self, target: str, line: int, known: set[str]):
        if target.split(".")[0] == "tfrecog":
            # `import tfrecog._zoo` names package data (the cards installed from zoo/), not a module of the tree.
            if target in known and target != self.name:
                self.imports.setdefault(target, line)
        elif target:
            self.external.setdefault(target.split(".")[0], line)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def layer_of(name: str) -> int:
    for index, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return index
    raise AssertionError(f"module {name} has no layer: add it to LAYERS in tests/test_architecture.py")


def parse_package(root: Path = PACKAGE, package: str = "tfrecog") -> dict[str, Module]:
    paths = modules(root, package)
    known = set(paths)
    return {name: Module(name, path, known, root) for name, path in paths.items()}


def upward_imports(graph: dict[str, Module]) -> list[str]:
    found = []
    for name, module in graph.items():
        for target, line in module.imports.items():
            if layer_of(target) > layer_of(name):
                found.append(f"{module.where}:{line}: {name} (layer {layer_of(name)}, "
                             f"{LAYERS[layer_of(name)][0]}) imports {target} (layer {layer_of(target)}, "
                             f"{LAYERS[layer_of(target)][0]})")
    return found


def cycles(graph: dict[str, Module]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), and self-imports."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v].imports:
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def private_uses(graph: dict[str, Module]) -> list[str]:
    """Private names used outside the module that defines them."""
    owners: dict[str, set[str]] = {}
    for name, module in graph.items():
        for private in module.defined:
            owners.setdefault(private, set()).add(name)
    found = []
    for name, module in graph.items():
        where = module.where
        for source, private, line in module.private_imports:
            found.append(f"{where}:{line}: imports {private} from {source}")
        for expression, private, line in module.attributes:
            target = module.module_aliases.get(expression.split(".")[0])
            if target is not None and target != name:
                found.append(f"{where}:{line}: uses {expression}.{private} of module {target}")
            elif private not in module.defined and owners.get(private, set()) - {name}:
                found.append(f"{where}:{line}: uses {expression}.{private}, defined in "
                             f"{', '.join(sorted(owners[private]))}")
    return found


# ----------------------------------------------------------------------------------------------------------------


def test_every_module_has_a_layer():
    for name in parse_package():
        layer_of(name)


def test_no_import_cycles():
    assert cycles(parse_package()) == []


def test_no_upward_imports():
    assert upward_imports(parse_package()) == []


def test_no_private_names_across_modules():
    assert private_uses(parse_package()) == []


def test_runtime_imports_neither_tensorflow_nor_tfrecog():
    graph = parse_package(RUNTIME, "tfrecog_runtime")
    assert graph, f"no runtime modules found under {RUNTIME}"
    heavy = [f"{m.where}:{line}: imports {package}"
             for m in graph.values() for package, line in m.external.items() if package in HEAVY]
    heavy += [f"{m.where}:{line}: imports {target}" for m in graph.values()
              for target, line in m.imports.items()]
    assert heavy == []


# The checks themselves, on small made-up packages: each rule catches what it is meant to catch.


def write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "tfrecog" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "tfrecog"


@pytest.mark.parametrize("where", ["top", "function"])
def test_an_upward_import_is_caught_even_inside_a_function(tmp_path, where):
    body = "from tfrecog import training\n" if where == "top" else "def f():\n    from tfrecog import training\n"
    root = write_package(tmp_path, {"__init__.py": "", "io.py": body, "training.py": "from tfrecog import io\n"})
    graph = parse_package(root)
    assert [line.split(": ", 1)[1].split(" (")[0] for line in upward_imports(graph)] == ["tfrecog.io"]
    assert cycles(graph) == [["tfrecog.io", "tfrecog.training"]]


def test_relative_and_aliased_imports_count(tmp_path):
    root = write_package(tmp_path, {"__init__.py": "", "models/__init__.py": "", "io.py": "",
                                    "models/base.py": "from . import trainer\n",
                                    "models/trainer.py": "import tfrecog.models.base as b\n"})
    graph = parse_package(root)
    assert graph["tfrecog.models.base"].imports == {"tfrecog.models.trainer": 1}
    assert cycles(graph) == [["tfrecog.models.base", "tfrecog.models.trainer"]]
    assert len(upward_imports(graph)) == 1


def test_private_names_across_modules_are_caught(tmp_path):
    root = write_package(tmp_path, {
        "__init__.py": "",
        "io.py": "def _helper():\n    pass\nclass A:\n    def _method(self):\n        pass\n",
        "data.py": "from tfrecog.io import _helper\n",
        "training.py": "from tfrecog import io\nio._helper()\ndef f(a):\n    return a._method()\n",
        "zoo.py": "class B:\n    def _method(self):\n        return self._method()\n",  # its own name: allowed
    })
    found = private_uses(parse_package(root))
    assert len(found) == 3 and all("zoo.py" not in line for line in found), found
