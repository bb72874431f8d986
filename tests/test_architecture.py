"""Who may import whom: the package's import graph read from the source with `ast`, and the component registries.

Every import statement counts, including those under `if TYPE_CHECKING:` and inside functions. Importing
`a.b.c` also runs the `__init__` of each enclosing package, so an import of `a.b.c` from outside `a.b`
counts as an import of `a.b` (and of `a`) too. A module's own enclosing packages are not charged: they
are already initialising when it runs (`from . import sibling` inside `a.b` is an edge to the sibling).
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dllm_decode
from dllm_decode.components import Component, Registry

ROOT = Path(dllm_decode.__file__).parent
PACKAGE = "dllm_decode"


def module_names() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is named by its `__init__`)."""
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported(module: str, path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that `module` imports anywhere in its source, with enclosing packages."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            targets.add(source)
            targets.update(f"{source}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    edges = set()
    for target in targets:
        parts = target.split(".")
        for end in range(1, len(parts) + 1):
            name = ".".join(parts[:end])
            if name in modules and name != module and not module.startswith(name + "."):
                edges.add(name)
    return edges


def import_graph() -> dict[str, set[str]]:
    files = module_names()
    return {name: imported(name, path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_graph_reader_sees_type_checking_and_function_imports():
    graph = import_graph()
    assert "dllm_decode.models.adapter" in graph["dllm_decode.cache.base"]  # under `if TYPE_CHECKING:`
    assert "dllm_decode.models.registry" in graph["dllm_decode.models.adapter"]  # inside `wrap`
    assert "dllm_decode.kernels" in graph["dllm_decode.models.layers"]  # the package around kernels.dense
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("layer", ["samplers", "kernels"])
def test_policies_and_kernels_never_reach_model_code(layer):
    graph = import_graph()
    for module in (name for name in graph if name == f"{PACKAGE}.{layer}" or name.startswith(f"{PACKAGE}.{layer}.")):
        models = {name for name in reachable(graph, module) if name.startswith(f"{PACKAGE}.models")}
        assert not models, f"{module} imports {sorted(models)} (directly or through other modules)"


def _import_seconds() -> float:
    """Seconds for `import dllm_decode.kernels` in a fresh interpreter that has already imported torch.

    torch itself is excluded: on the shared CI machine its import alone takes 2-5 s and is not ours to cut.
    """
    code = ("import sys, time, torch; t = time.perf_counter(); import dllm_decode.kernels; "
            "dt = time.perf_counter() - t; "
            "heavy = [m for m in ('transformers', 'dllm_decode.models', 'dllm_decode.api') if m in sys.modules]; "
            "assert not heavy, heavy; print(dt)")
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip())


def test_kernels_import_alone_quickly():
    times = []
    for _ in range(3):  # the minimum of up to three runs: one quiet run is enough
        times.append(_import_seconds())
        if times[-1] < 1.0:
            break
    assert min(times) < 1.0, f"import dllm_decode.kernels took {times} s (after torch)"


def test_registry_error_messages():
    class Base(Component):
        pass

    class Named(Base):
        name = "named"

    class Nameless(Base):
        pass

    table = Registry("widget", Base)
    assert table.register(Named) is Named and table.get("named") is Named
    with pytest.raises(ValueError, match=r"`widget` must be one of \['named'\], got 'other'"):
        table.get("other")
    assert table.get("other", None) is None
    with pytest.raises(ValueError, match="`widget` name must be new, but 'named' is already registered"):
        table.register(Named)
    with pytest.raises(ValueError, match="`widget` component Nameless needs a class attribute `name`"):
        table.register(Nameless)
    with pytest.raises(ValueError, match="`widget` components must subclass Base"):
        table.register(int)


def test_every_axis_registry_lives_beside_its_base_class():
    from dllm_decode.cache.base import CACHES, CacheStrategy
    from dllm_decode.kernels.base import ATTENTION, AttentionStrategy
    from dllm_decode.plan import LOOPS, Loop
    from dllm_decode.samplers.blocks import BLOCKS, BlockSchedule
    from dllm_decode.samplers.early import EARLY_COMMITS, EarlyCommit

    import dllm_decode.api  # noqa: F401  (imports the loop modules, as `Sampler` does)

    expected = [(BLOCKS, BlockSchedule, {"fixed", "adaptive"}), (EARLY_COMMITS, EarlyCommit, {"prophet", "sched"}),
                (CACHES, CacheStrategy, {"none", "prefix", "dual", "delayed", "windowed"}),
                (ATTENTION, AttentionStrategy, {"dense", "sparse"}), (LOOPS, Loop, {"denoise", "uniform", "ssd", "s2d2", "deer"})]
    for table, base, names in expected:
        assert table.base is base and set(table) == names
        assert all(issubclass(cls, base) and cls.name == name for name, cls in table.items())
