"""The layout keeps its promises: no import circle in gpubackprop, device knowledge only in
backends/, and one table of activations that everything else reads."""
import argparse
import ast
import re
from pathlib import Path

import pytest

import gpubackprop as gb
from gpubackprop import activations
from gpubackprop.cli import train as cli_train

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
    assert "gpubackprop.activations" in graph["gpubackprop.model.network"]
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
    parser = argparse.ArgumentParser()
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


# ---------------------------------------------------------------------- the redesign's invariants
MAX_FUNCTION, MAX_CLASS, MAX_MODULE = 80, 300, 400
MODEL = PACKAGE / "model"
TESTS = PACKAGE.parent / "tests"


def units():
    """(kind, lines, where) of every function, class and module in gpubackprop/."""
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(PACKAGE.parent)
        yield "module", len(text.splitlines()), str(where)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                yield kind, node.end_lineno - node.lineno + 1, f"{where}:{node.lineno} {node.name}"


def test_no_unit_is_too_long():
    limits = {"function": MAX_FUNCTION, "class": MAX_CLASS, "module": MAX_MODULE}
    too_long = [f"{kind} {where}: {lines} lines (at most {limits[kind]})" for kind, lines, where in units()
                if lines > limits[kind]]
    assert not too_long, "\n".join(too_long)


def model_private_names() -> set:
    """The underscored names the model package defines on its objects (self._x = ..., def _x)."""
    names = set()
    for path in MODEL.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("_") \
                    and not node.name.startswith("__"):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr.startswith("_") \
                    and not node.attr.startswith("__"):
                names.add(node.attr)
    return names


# What training, distributed, the command line and tests reached into before the model had its own
# package: kept here so that none of them comes back under its old name.
FORMER_REACHES = {"_workspaces", "_workspace", "_step", "_train_step", "_fit_step", "_fit_launch", "_fit_buffers",
                  "_fit_state", "_recorder", "_forward", "_backward", "_loss", "_loss_async", "_flat_params",
                  "_optimizer_state", "_optimizer_step", "_loss_spec", "_batch_inputs", "_own_or_copied", "_update"}


def private_reaches(paths, names):
    """[where: obj._name] for every read of ``obj._name`` (obj not self/cls) with _name in ``names``."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in names and \
                    not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{path}:{node.lineno}: .{node.attr}")
    return found


def test_nothing_outside_the_model_reads_a_networks_private_attributes():
    names = model_private_names() | FORMER_REACHES
    assert "_lock" in names and "_batch_too_large" in names  # the scan sees the model's own
    outside = [p for p in PACKAGE.rglob("*.py") if MODEL not in p.parents] + sorted(TESTS.rglob("*.py"))
    reaches = private_reaches(outside, names)
    assert not reaches, "private reaches into the model:\n" + "\n".join(reaches)


def test_the_private_reach_scan_would_see_one(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f(net):\n    return net._workspaces, self._workspaces\n")
    assert len(private_reaches([sample], {"_workspaces"})) == 1


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        for nxt in graph.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_model_does_not_import_the_file_format():
    graph = import_graph()
    for name in [n for n in graph if n == "gpubackprop.model" or n.startswith("gpubackprop.model.")]:
        assert "gpubackprop.checkpoint" not in reachable(graph, name), name
    assert gb.MLP.file_format is gb.checkpoint  # given to it by the package


def test_each_slot_layout_is_named_once_and_the_kernels_get_it_as_defines():
    from gpubackprop import layouts
    from gpubackprop.backends.cuda_kernels import kernel_source

    # No bare slot positions: status/totals/payload/guard are indexed by name everywhere.
    bare = re.compile(r"\b(status|totals|guard|payload)\s*\[\s*-?\d")
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "kernels").glob("*.cu*")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if bare.search(line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "bare slot positions:\n" + "\n".join(offenders)
    for dtype in ("float32", "float64"):
        assert layouts.cuda_defines() in kernel_source(dtype)
    assert "#define GB_STATUS_UPDATE_CHECK 2" in layouts.cuda_defines()
    assert len(layouts.PAYLOAD_TAIL) == len(layouts.STATUS) + 1


def test_one_backend_op_per_optimizer_step_and_per_loss_chosen_by_name():
    from gpubackprop import losses, optimizers
    from gpubackprop.backends import Backend
    from gpubackprop.backends.cuda_kernels import kernel_source

    abstract = Backend.__abstractmethods__
    assert "optimizer_step" in abstract and "loss_grad" in dir(Backend)
    per_rule = [m for m in dir(Backend) for name in (*optimizers.NAMES, *losses.NAMES) if m.startswith(name + "_")]
    assert not per_rule, per_rule
    source = kernel_source("float32")
    for name, rule in optimizers.RULES.items():  # every rule: its NumPy reference and its kernel
        assert type(rule).numpy_step is not optimizers.Rule.numpy_step, name
        assert f"void {rule.kernel}(" in source, name


def test_one_set_of_defaults():
    import inspect

    from gpubackprop import defaults, training
    from gpubackprop.cli import options as cli_train

    signature = inspect.signature(gb.MLP.fit)
    assert (signature.parameters["epochs"].default, signature.parameters["batch_size"].default,
            signature.parameters["lr"].default) == (defaults.EPOCHS, defaults.BATCH_SIZE, defaults.LR)
    assert inspect.signature(training.fit).parameters["lr"].default == defaults.LR
    init = inspect.signature(gb.MLP).parameters
    assert (init["hidden_activation"].default, init["loss"].default, init["optimizer"].default,
            init["dtype"].default) == (defaults.ACTIVATION, defaults.LOSS, defaults.OPTIMIZER, defaults.DTYPE)
    parser = argparse.ArgumentParser()
    cli_train.add_arguments(parser)
    assert parser.get_default("epochs") == defaults.CLI_EPOCHS
    assert set(defaults.CLI_LR) <= set(gb.optimizers.NAMES)  # (an optimizer not listed trains at defaults.LR)


@pytest.mark.parametrize("message", ["must be a positive int", "{name} must be a positive finite number{limit}",
                                     "clip_norm must be a positive finite number", "must be in {interval}",
                                     "takes logits: its output_activation must be"])
def test_each_argument_rule_is_checked_in_one_place(message):
    holders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if message in p.read_text()]
    assert len(holders) == 1, f"{message!r} is checked in {holders}"
