"""The Python examples of the README and of docs/: where they are and what they need.

An example is a fenced ```python block. HTML comments on the lines right above its fence (invisible
once rendered) say what it needs; nothing else may stand there:

- ``<!-- requires: gpubackprop.sklearn onnxruntime -->``: names (modules, or attributes such as
  ``gpubackprop.MLP.to_onnx``) that must import; where one does not, the example is skipped with
  the reason (a feature that is not in this checkout, an optional extra that is not installed);
- ``<!-- gpu -->``: needs a usable CUDA device (the test is marked ``gpu``);
- ``<!-- mpi: N -->``: a script for ``mpiexec -n N`` (tests/test_distributed.py runs it);
- ``<!-- continues -->``: runs in the namespace the previous example of the same file left.

Used by tests/test_docs.py (which runs them) and tests/test_distributed.py (the MPI ones).
"""
from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!--\s*(requires|gpu|mpi|continues)\s*(?::\s*(.*?))?\s*-->$")
FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")


@dataclasses.dataclass(frozen=True)
class Example:
    path: str  # relative to the repository root
    line: int  # 1-based line of the first line of code (after the fence)
    code: str
    requires: tuple[str, ...] = ()
    gpu: bool = False
    mpi: int | None = None
    continues: bool = False

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def documents() -> list[Path]:
    """README.md and every Markdown file under docs/, in a stable order."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def _markers(lines, fence_index, where):
    """The marker comments directly above the fence at ``fence_index``."""
    found = {}
    i = fence_index - 1
    while i >= 0 and lines[i].strip().startswith("<!--"):
        text = lines[i].strip()
        match = MARKER.match(text)
        if match is None:
            raise ValueError(f"{where}: unknown marker above a python example: {text!r} "
                             "(known: requires: NAMES, gpu, mpi: N, continues)")
        key, value = match.group(1), match.group(2)
        if key == "requires":
            if not value:
                raise ValueError(f"{where}: 'requires' needs the names, e.g. <!-- requires: gpubackprop.sklearn -->")
            found["requires"] = tuple(value.split())
        elif key == "mpi":
            if not (value and value.isdigit() and int(value) >= 1):
                raise ValueError(f"{where}: 'mpi' needs the number of ranks, e.g. <!-- mpi: 2 -->")
            found["mpi"] = int(value)
        else:
            if value:
                raise ValueError(f"{where}: {key!r} takes no value, got {value!r}")
            found[key] = True
        i -= 1
    return found


def examples(path: Path) -> list[Example]:
    """Every ```python example of one Markdown file, with its markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    relative = path.relative_to(REPO).as_posix()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        indent, language = fence.group(1), fence.group(2)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{relative}:{i + 1}: a code fence that is never closed")
        if language in ("py", "python3", "pycon", "ipython"):
            raise ValueError(f"{relative}:{i + 1}: write Python examples as ```python (found ```{language}), "
                             "so that the documentation test runs them")
        if language == "python":
            body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[i + 1:end]]
            found.append(Example(relative, i + 2, "\n".join(body) + "\n", **_markers(lines, i, f"{relative}:{i + 1}")))
        i = end + 1
    return found


def all_examples() -> list[Example]:
    return [example for path in documents() for example in examples(path)]


def chains(path_examples: list[Example]) -> list[list[Example]]:
    """Examples grouped into what runs in one namespace: each ``continues`` one joins the chain before it."""
    groups: list[list[Example]] = []
    for example in path_examples:
        if example.continues:
            if not groups:
                raise ValueError(f"{example.where}: 'continues' on the first example of the file")
            groups[-1].append(example)
        else:
            groups.append([example])
    return groups


def missing(name: str) -> str | None:
    """None when ``name`` (a module, or a module's attribute path) can be had here, else why not."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            thing = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and not module_name.startswith(error.name + ".") and error.name != module_name:
                return f"{name}: importing {module_name} failed: {error}"  # a dependency of it is missing
            continue
        owner = module_name
        for attribute in parts[cut:]:
            if not hasattr(thing, attribute):
                return f"{name} does not exist here ({owner} has no {attribute!r})"
            thing, owner = getattr(thing, attribute), f"{owner}.{attribute}"
        return None
    return f"{name} cannot be imported here"


def command_lines() -> list[tuple[str, list[str]]]:
    """Every ``gpubackprop ...`` command of the ```bash blocks of README.md and docs/, as
    ("path:line", argv after "gpubackprop"), split at ``&&``, ``|`` and ``;``, comments dropped."""
    import shlex

    found = []
    for path in documents():
        lines = path.read_text(encoding="utf-8").splitlines()
        relative = path.relative_to(REPO).as_posix()
        inside = False
        for number, line in enumerate(lines, 1):
            fence = FENCE.match(line)
            if fence is not None:
                inside = not inside and fence.group(2) in ("bash", "sh", "shell", "console")
                continue
            if not inside:
                continue
            words = shlex.split(line, comments=True)
            command: list[str] = []
            for word in [*words, "&&"]:
                if word in ("&&", "|", ";", "||"):
                    if "gpubackprop" in command:
                        found.append((f"{relative}:{number}", command[command.index("gpubackprop") + 1:]))
                    command = []
                else:
                    command.append(word)
    return found
