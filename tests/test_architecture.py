"""One direction of flow: gibbsebm's imports point down its layers and form no cycle.

Every module of ``gibbsebm/`` is parsed with :mod:`ast` (nothing is imported). An edge
``a -> b`` is any import of ``b`` by ``a``: module-level or inside a function, absolute or
relative, ``from . import x`` resolving to the submodule ``x``, ``import a.b.c`` and
``from a.b import c`` also importing the packages ``a.b`` (their ``__init__`` runs), and
``importlib.import_module("literal")``. The root package ``gibbsebm`` is the face: every
import runs its ``__init__``, so the edge to it is not counted, and instead its eager imports
must stay in the core; names taken from it resolve to where they live (its ``_LAZY`` table
of strings, or its eager imports).

Layers, lowest first (:data:`LAYERS`): a module may import its own layer and the layers below.
A module that matches no entry fails the test: new code has to choose its layer.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE = "gibbsebm"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

#: Layers from the bottom up: (name, patterns). A pattern is a module name, or ``pkg.*``
#: for the package ``pkg`` and every module below it (only for packages that are one layer
#: by design). The longest matching pattern wins.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "core",
        (
            "gibbsebm._validation",
            "gibbsebm._json",
            "gibbsebm.constraints",
            "gibbsebm.distribution",
            "gibbsebm._approximate",
            "gibbsebm.latent",
            "gibbsebm.energies.*",
            "gibbsebm.diagnostics",
            "gibbsebm._convergence",
            "gibbsebm._run_stats",
            "gibbsebm._tails",
            "gibbsebm.modes",
            "gibbsebm.errors",
        ),
    ),
    # the shard-plan protocol and the machinery that maps shards: knows no sampler/estimator
    ("runtime", ("gibbsebm.runtime.*",)),
    # adapters to other libraries' formats (arviz InferenceData, Pyro models as potentials):
    # they import only the core, so the driver can hand its results to them
    ("adapters", ("gibbsebm.interop.*",)),
    (
        "kernels",
        (
            "gibbsebm.samplers",
            "gibbsebm.samplers.base",
            "gibbsebm.samplers.integrators",
            "gibbsebm.samplers._compiled",
            "gibbsebm.samplers.metrics",
            "gibbsebm.samplers.jitter",
            "gibbsebm.samplers.ula",
            "gibbsebm.samplers.mala",
            "gibbsebm.samplers.hmc",
            "gibbsebm.samplers.nuts",
            "gibbsebm.samplers.gwg",
            "gibbsebm.samplers.dmala",
            "gibbsebm.samplers.metropolis",
            "gibbsebm.samplers.block_gibbs",
            "gibbsebm.samplers._ladder",
            "gibbsebm.samplers._pt_results",
            "gibbsebm.samplers.tempering",
            "gibbsebm.samplers.exchange",
        ),
    ),
    ("adaptation", ("gibbsebm.samplers.adaptation.*", "gibbsebm.samplers.registry")),
    (
        "driver",
        (
            "gibbsebm.run",
            "gibbsebm._run_init",
            "gibbsebm._run_loop",
            "gibbsebm.samples",
            "gibbsebm._summary",
        ),
    ),
    (
        "estimators, calibration, learning",
        (
            "gibbsebm.partition.*",
            "gibbsebm.calibration.*",
            "gibbsebm.learning.*",
        ),
    ),
    ("executors", ("gibbsebm.executors",)),
    ("workflow", ("gibbsebm.workflow.*",)),
    ("face", ("gibbsebm", "gibbsebm.__main__", "gibbsebm.cli.*", "gibbsebm.demo.*")),
)

#: (importer, imported) edges that break the rules today: being removed by the architecture
#: issue ("One direction of flow"); empty this set as they go (a stale entry fails the test).
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


# --------------------------------------------------------------------------------------------
# the checker (pure functions over a package directory, also run on a synthetic package below)


def find_modules(package_dir: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Module name -> (path, is_package) for every ``.py`` file below ``package_dir``."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir).with_suffix("")
        parts = [package, *rel.parts]
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _root_names(modules: dict[str, tuple[Path, bool]], package: str) -> dict[str, str]:
    """Names the root package exposes -> the module they live in (``_LAZY`` and eager imports)."""
    path, _ = modules[package]
    tree = ast.parse(path.read_text(), str(path))
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in targets):
                for k, v in zip(node.value.keys, node.value.values):
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant):
                        names[k.value] = v.value
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{package}.{node.module}"
    return names


def import_graph(package_dir: Path, package: str) -> dict[str, dict[str, int]]:
    """``importer -> {imported: first line}`` over the modules of ``package``."""
    modules = find_modules(package_dir, package)
    root_names = _root_names(modules, package)
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}

    for name, (path, is_pkg) in modules.items():
        edges = graph[name]
        own = set(_ancestors(name)) | {name}
        current = name if is_pkg else name.rpartition(".")[0]

        def add(target: str, line: int, edges=edges, own=own, name=name) -> None:
            # the module, and the packages above it that this import runs (not the root,
            # nor the importer's own packages, which run before the importer anyway)
            for t in [*_ancestors(target)[1:], target]:
                if t in modules and t not in own and t != name:
                    edges.setdefault(t, line)
            if target == package and name != package:
                edges.setdefault(package, line)

        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package or alias.name.startswith(package + "."):
                        add(alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = current.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not (target == package or target.startswith(package + ".")):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        add(sub, node.lineno)
                    elif target == package and alias.name in root_names:
                        add(root_names[alias.name], node.lineno)
                    elif target == package and alias.name != "*":
                        pass  # a name the root defines itself (e.g. __version__): no edge
                    else:
                        add(target, node.lineno)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value.startswith(package)
            ):
                add(node.args[0].value, node.lineno)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle path ``[a, b, ..., a]`` per strongly connected component with a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan; the package graphs are small
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    cycles = []
    for comp in sccs:
        members = set(comp)
        start = min(comp)
        if len(comp) == 1 and start not in graph.get(start, {}):
            continue
        # breadth-first search for the shortest way back to start inside the component
        prev: dict[str, str] = {}
        frontier = [start]
        found = None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph.get(v, {})):
                    if w == start:
                        found = v
                        break
                    if w in members and w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        path = [found]
        while path[-1] != start:
            path.append(prev[path[-1]])
        cycles.append([start, *reversed(path[:-1]), start] if len(path) > 1 else [start, start])
    return cycles


def _matches(module: str, pattern: str) -> int:
    """Length of ``pattern`` if it matches ``module``, else -1."""
    if pattern.endswith(".*"):
        pkg = pattern[:-2]
        return len(pkg) if module == pkg or module.startswith(pkg + ".") else -1
    return len(pattern) if module == pattern else -1


def layer_of(module: str, layers: Iterable[tuple[str, tuple[str, ...]]]) -> int | None:
    """Index of the layer of ``module`` (longest matching pattern), ``None`` if unknown."""
    best, best_len = None, -1
    for i, (_, patterns) in enumerate(layers):
        for p in patterns:
            n = _matches(module, p)
            if n > best_len:
                best, best_len = i, n
    return best


def upward_imports(
    graph: dict[str, dict[str, int]], layers: tuple[tuple[str, tuple[str, ...]], ...]
) -> list[tuple[str, str, int, str, str]]:
    """``(module, imported, line, its layer, imported layer)`` for every import pointing up."""
    out = []
    for src, targets in sorted(graph.items()):
        ls = layer_of(src, layers)
        for dst, line in sorted(targets.items()):
            ld = layer_of(dst, layers)
            if ls is not None and ld is not None and ld > ls:
                out.append((src, dst, line, layers[ls][0], layers[ld][0]))
    return out


def _without(graph: dict[str, dict[str, int]], edges: set[tuple[str, str]]):
    return {s: {d: n for d, n in t.items() if (s, d) not in edges} for s, t in graph.items()}


def _format_cycle(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    hops = [f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join([*hops, cycle[-1]])


# --------------------------------------------------------------------------------------------
# the package


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    return import_graph(PACKAGE_DIR, PACKAGE)


def test_every_module_has_a_layer(graph):
    unknown = sorted(m for m in graph if layer_of(m, LAYERS) is None)
    assert not unknown, (
        f"modules with no layer: {unknown}; add each to LAYERS in {Path(__file__).name} "
        "(choose the lowest layer whose modules it may import)"
    )


def test_no_import_cycles(graph):
    cycles = find_cycles(_without(graph, KNOWN_VIOLATIONS))
    assert not cycles, "import cycles:\n" + "\n".join(_format_cycle(graph, c) for c in cycles)


def test_imports_point_down(graph):
    bad = [v for v in upward_imports(graph, LAYERS) if (v[0], v[1]) not in KNOWN_VIOLATIONS]
    assert not bad, "imports pointing up a layer:\n" + "\n".join(
        f"{src} imports {dst} (line {line}): {ls} -> {ld}" for src, dst, line, ls, ld in bad
    )


def test_known_violations_are_still_there(graph):
    stale = sorted(e for e in KNOWN_VIOLATIONS if e[1] not in graph.get(e[0], {}))
    assert not stale, f"fixed, remove from KNOWN_VIOLATIONS: {stale}"


def test_the_root_package_imports_only_the_core(graph):
    """Every import of a gibbsebm module runs ``gibbsebm/__init__``: what it imports eagerly
    (at module level) is a dependency of every module, so it must be core."""
    path, _ = find_modules(PACKAGE_DIR, PACKAGE)[PACKAGE]
    tree = ast.parse(path.read_text())
    eager = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    core = 0
    for node in eager:
        if isinstance(node, ast.ImportFrom) and node.level:
            target = f"{PACKAGE}.{node.module}"
            assert layer_of(target, LAYERS) == core, f"gibbsebm/__init__ imports {target} eagerly"
        else:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert not any(n and n.split(".")[0] == PACKAGE for n in names), ast.dump(node)


def test_kernels_import_nothing_from_adaptation(graph):
    kernels = next(i for i, (name, _) in enumerate(LAYERS) if name == "kernels")
    bad = [
        (src, dst)
        for src, targets in graph.items()
        if layer_of(src, LAYERS) == kernels
        for dst in targets
        if dst.startswith("gibbsebm.samplers.adaptation") or dst == "gibbsebm.samplers.registry"
    ]
    assert not bad


# --------------------------------------------------------------------------------------------
# negative control: a synthetic package with a cycle and an upward import must be caught


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_checker_reports_a_cycle_and_an_upward_import(tmp_path):
    _write(
        tmp_path / "toy",
        {
            "__init__.py": '_LAZY = {"run": "toy.high"}\nfrom .low import x\n',
            "low.py": "x = 1\n\ndef f():\n    from .high import y  # upward, function-level\n",
            "high.py": "import toy.sub.leaf\nfrom toy import run\ny = 2\n",
            "a.py": "from . import b\n",
            "b.py": "from .a import z\n",
            "sub/__init__.py": "",
            "sub/leaf.py": "from .. import low\n",
        },
    )
    g = import_graph(tmp_path / "toy", "toy")
    # relative, absolute, `from . import x`, implicit parent package, lazy root name
    assert g["toy.low"] == {"toy.high": 4}
    assert set(g["toy.high"]) == {"toy.sub", "toy.sub.leaf"}  # `from toy import run`: itself
    assert g["toy.a"] == {"toy.b": 1} and g["toy.b"] == {"toy.a": 1}
    assert g["toy.sub.leaf"] == {"toy.low": 1}
    assert g["toy"] == {"toy.low": 2}

    cycles = find_cycles(g)
    assert ["toy.a", "toy.b", "toy.a"] in cycles
    assert any(c[0] == c[-1] and {"toy.low", "toy.high"} <= set(c) for c in cycles)
    assert "toy.a (line 1) -> toy.b (line 1) -> toy.a" in [_format_cycle(g, c) for c in cycles]

    layers = (
        ("bottom", ("toy.low", "toy.sub.*")),
        ("top", ("toy", "toy.high", "toy.a", "toy.b")),
    )
    assert upward_imports(g, layers) == [("toy.low", "toy.high", 4, "bottom", "top")]
    assert layer_of("toy.sub.leaf", layers) == 0 and layer_of("toy.new", layers) is None
