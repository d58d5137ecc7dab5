"""The package's structure: no import circles between its modules, no function-local imports
of net2vec modules (the usual way of hiding a circle), every module in a layer of the flow and
no import of a higher layer (docs/architecture.md "Layout"), and the public names resolve."""

import ast
from pathlib import Path

import net2vec

SRC = Path(__file__).resolve().parents[1] / "src" / "net2vec"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_only(node: ast.AST) -> bool:
    """Inside ``if TYPE_CHECKING:``: an annotation's import, never executed."""
    return any(
        isinstance(parent, ast.If) and getattr(parent.test, "id", None) == "TYPE_CHECKING"
        for parent in getattr(node, "parents", [])
    )


def imports(tree: ast.AST, top_level: bool) -> set[str]:
    """net2vec modules imported at module level (top_level) or inside functions (not top_level)."""
    found = set()
    for node in ast.walk(tree):
        inside = any(
            isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef))
            for parent in getattr(node, "parents", [])
        )
        if inside == top_level or type_checking_only(node):
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("net2vec"):
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("net2vec")}
    return found


def parse(path: Path) -> ast.AST:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.parents = [*getattr(node, "parents", []), node]
    return tree


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        found = imports(parse(path), top_level=True)
        # `from net2vec.x import y` counts module x.y when y is a submodule, else module x
        targets = {
            t
            for t in found
            if t in modules and not any(o.startswith(t + ".") for o in found if o in modules)
        }
        edges[name] = {t for t in targets if t != name}
    return edges


def test_no_import_circles():
    edges, state, stack = graph(), {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert len(edges) > 40


def test_no_function_local_imports_of_net2vec_modules():
    allowed = {
        "net2vec.features"
    }  # its __getattr__ imports synthnet lazily (module docstring says why)
    local = {module_name(p): imports(parse(p), top_level=False) for p in SRC.rglob("*.py")}
    offenders = {
        name: sorted(found) for name, found in local.items() if found and name not in allowed
    }
    assert offenders == {}


def test_public_names_resolve():
    for name in net2vec.__all__:
        assert getattr(net2vec, name) is not None, name


def test_code_cites_only_documents_in_the_repository():
    """Comments cite docs/method.md and docs/architecture.md, which a clone holds."""
    root = SRC.parents[1]
    cited = [
        f"{path.relative_to(root)}:{n}"
        for pattern in ("src/**/*.py", "tests/*.py", "conf/**/*.yaml", "*.py")
        for path in root.glob(pattern)
        if path.resolve() != Path(__file__).resolve()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "PROTOCOL" in line or "DESIGN.md" in line
    ]
    assert not cited, f"citations of documents outside the repository: {cited}"
    assert (root / "docs" / "method.md").is_file() and (root / "docs" / "architecture.md").is_file()


# The flow, lowest layer first: a module may import its own layer and the layers below it only.
# cli and layers are the entry points' helpers; net2vec (the package) names the public API.
LAYERS = (
    "common",
    "data",
    "features",
    "statistics",
    "probes",
    "run",
    "analysis",
    "experiments",
    "cli",
    "layers",
)


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_lies_in_a_layer():
    loose = [name for name in graph() if name != "net2vec" and layer_of(name) is None]
    assert loose == [], f"modules outside the layers {LAYERS}: {loose}"


def test_no_module_imports_a_higher_layer():
    upward = sorted(
        f"{name} -> {target}"
        for name, targets in graph().items()
        for target in targets
        if layer_of(name) is not None
        and layer_of(target) is not None
        and layer_of(target) > layer_of(name)
    )
    assert upward == [], "imports of a higher layer:\n" + "\n".join(upward)


def test_the_package_top_level_holds_only_entry_helpers():
    loose = sorted(p.name for p in SRC.glob("*.py"))
    assert loose == ["__init__.py", "cli.py", "layers.py"], loose
