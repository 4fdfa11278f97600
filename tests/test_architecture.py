"""The layout keeps its promises: no import circle in gpubackprop, device knowledge only in
backends/, and one table of activations that everything else reads."""
import ast
import re
from pathlib import Path

import pytest

import gpubackprop as gb
from gpubackprop import activations, cli_train

PACKAGE = Path(gb.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(path: Path) -> set:
    """The gpubackprop modules ``path`` imports, anywhere in it (inside functions too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("gpubackprop"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("gpubackprop"):
                continue
            found.add(target)
            for alias in node.names:  # `from . import mlp` imports the module gpubackprop.mlp
                if (PACKAGE.parent / (target.replace(".", "/") + f"/{alias.name}.py")).exists() or \
                        (PACKAGE.parent / (target.replace(".", "/") + f"/{alias.name}/__init__.py")).exists():
                    found.add(f"{target}.{alias.name}")
    return found - {name}


def import_graph() -> dict:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for target in internal_imports(path):
            # importing a.b.c runs a/__init__ and a/b/__init__ too
            parts = target.split(".")
            edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        # A module's own ancestor packages are already being imported when it runs: no edge.
        ancestors = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
        graph[name] = {t for t in edges if t in modules and t != name and t not in ancestors}
    return graph


def find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_scan_sees_imports_and_would_find_a_circle():
    graph = import_graph()
    assert "gpubackprop.backends.numpy_backend" in graph["gpubackprop.backends"]
    assert "gpubackprop.activations" in graph["gpubackprop.mlp"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_module_outside_backends_branches_on_the_device():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "backends" in path.relative_to(PACKAGE).parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"backend\.name\s*[=!]=|\.xp\b|backend\.name\s+(not\s+)?in\b", line):
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not offenders, "device knowledge outside backends/:\n" + "\n".join(offenders)


def test_public_exceptions_live_in_one_module():
    from gpubackprop import errors

    for name in ("BackendUnavailableError", "NonFiniteLossError", "BatchTooLargeError", "CheckpointError",
                 "TrainingInterrupted"):
        assert getattr(gb, name) is getattr(errors, name)
        assert getattr(gb, name).__module__ == "gpubackprop.errors"


def test_the_activation_table_is_what_everything_reads():
    assert set(activations.HIDDEN) <= set(activations.NAMES) and set(activations.OUTPUT) <= set(activations.NAMES)
    parser = cli_train.argparse.ArgumentParser()
    cli_train.add_arguments(parser)
    choices = {action.dest: action.choices for action in parser._actions}
    assert tuple(choices["activation"]) == activations.HIDDEN
    assert tuple(choices["output_activation"]) == activations.OUTPUT
    backend = gb.get_backend("numpy")
    for name, act in activations.TABLE.items():  # the NumPy math of every row exists
        assert callable(getattr(backend, f"_{name}_forward"))
        assert act.unit_derivative or callable(getattr(backend, f"_{name}_backward"))
        for role, allowed in (("hidden_activation", act.hidden), ("output_activation", act.output)):
            if allowed:
                gb.MLP([2, 3, 1], **{role: name}, backend="numpy")
            else:
                with pytest.raises(ValueError, match=role):
                    gb.MLP([2, 3, 1], **{role: name}, backend="numpy")


@pytest.mark.parametrize("name", activations.NAMES)
def test_initialisation_follows_the_table(name):
    act = activations.TABLE[name]
    role = "hidden_activation" if act.hidden else "output_activation"
    net = gb.MLP([50, 30, 1] if act.hidden else [50, 30], **{role: name}, backend="numpy", dtype="float64", seed=0)
    W = net.get_params()[0][0]
    limit = act.init_limit(50, 30)
    assert abs(W).max() <= limit and abs(W).max() > 0.9 * limit  # drawn from U(-limit, limit)
