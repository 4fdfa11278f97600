"""The documentation: every Python example of README.md and docs/ runs as written, the README stays a
front page, and the site builds with warnings as errors (``mkdocs build --strict``, as CI does here).

The examples and their markers (requires, gpu, mpi, continues) are described in tests/doc_examples.py.
Each chain of examples runs in a fresh namespace, in a temporary working folder (the examples write
files such as model.npz), with the code compiled under its file name and line so that a failure's
traceback points into the Markdown file.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import missing, skip

sys.path.insert(0, str(Path(__file__).resolve().parent))
import doc_examples  # noqa: E402

REPO = doc_examples.REPO
README_MAX_LINES = 200  # issue 19: the README is a front page; the rest lives in docs/


def _chain_params():
    params = []
    for path in doc_examples.documents():
        for chain in doc_examples.chains(doc_examples.examples(path)):
            if any(example.mpi for example in chain):
                continue  # run by tests/test_distributed.py under mpiexec (see test_every_mpi_example_...)
            marks = [pytest.mark.gpu] if any(example.gpu for example in chain) else []
            params.append(pytest.param(chain, id=chain[0].where, marks=marks))
    return params


@pytest.mark.parametrize("chain", _chain_params())
def test_documented_example_runs_as_written(chain, tmp_path, monkeypatch):
    for example in chain:
        for name in example.requires:
            why = doc_examples.missing(name)
            if why is not None:  # one reason per missing module, whichever example needs it
                skip(missing(name.split(".")[0]) or f"{name} cannot be had here")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    for example in chain:
        # Blank lines in front: the compiled code's line numbers are the Markdown file's.
        code = compile("\n" * (example.line - 1) + example.code, str(REPO / example.path), "exec")
        exec(code, namespace)


def test_the_examples_are_found_and_every_document_is_covered():
    every = doc_examples.all_examples()
    in_readme = [example for example in every if example.path == "README.md"]
    assert len(in_readme) >= 4, in_readme  # regression, classification, scikit-learn, the API in ten lines
    guides = {example.path for example in every if example.path.startswith("docs/guides/")}
    for page in ("lesson", "training", "classification", "sklearn", "gpu", "distributed"):
        assert f"docs/guides/{page}.md" in guides, f"no Python example found in docs/guides/{page}.md"


def test_every_mpi_example_is_the_one_test_distributed_runs():
    # An mpi example takes ~15 s on 2 ranks: tests/test_distributed.py runs it once, with checks of its
    # own (it learned, rank 0 alone reports and saves); a new one must be added there.
    mpi = [example for example in doc_examples.all_examples() if example.mpi]
    assert [(example.path, example.mpi) for example in mpi] == [("docs/guides/distributed.md", 2)], mpi
    assert "gb.distributed.init()" in mpi[0].code


def test_markers_are_parsed_and_unknown_ones_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(doc_examples, "REPO", tmp_path)
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- requires: gpubackprop.sklearn onnxruntime -->\n<!-- gpu -->\n```python\nx = 1\n```\n"
                    "<!-- continues -->\n```python\ny = x\n```\n\n```bash\nls\n```\n", encoding="utf-8")
    first, second = doc_examples.examples(page)
    assert (first.line, first.code, first.requires, first.gpu, first.continues) == (
        6, "x = 1\n", ("gpubackprop.sklearn", "onnxruntime"), True, False)
    assert second.continues and not second.gpu and second.line == 10
    assert doc_examples.chains([first, second]) == [[first, second]]
    page.write_text("<!-- requires gpubackprop.sklearn -->\n```python\nx = 1\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="page.md:2: unknown marker"):
        doc_examples.examples(page)
    page.write_text("```py\nx = 1\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="write Python examples as ```python"):
        doc_examples.examples(page)


def test_missing_names_say_why():
    assert doc_examples.missing("gpubackprop.MLP.fit") is None
    assert doc_examples.missing("numpy.linalg") is None
    assert "gpubackprop has no 'no_such_module'" in doc_examples.missing("gpubackprop.no_such_module")
    assert "cannot be imported" in doc_examples.missing("no_such_package_gpubackprop_test")


def test_every_documented_command_line_parses():
    # Each `gpubackprop ...` of the bash blocks, parsed by the command line's own parser (nothing runs):
    # a renamed or missing command or option in the documentation fails here.
    from gpubackprop.cli import build_parser

    commands = doc_examples.command_lines()
    assert len(commands) >= 10, commands
    for where, argv in commands:
        if argv[:1] == ["COMMAND"] or "--help" in argv or "--version" in argv:
            continue  # a placeholder, or a help that exits at once
        try:
            build_parser().parse_args(argv)
        except SystemExit as exit:
            pytest.fail(f"{where}: gpubackprop {' '.join(argv)} does not parse (exit code {exit.code})")


def test_readme_is_a_front_page_of_at_most_200_lines():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the rest belongs in docs/"


def test_every_readme_link_into_the_repository_exists():
    import re

    text = (REPO / "README.md").read_text(encoding="utf-8")
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t and not t.startswith("#")]
    assert targets
    for target in targets:
        assert (REPO / target.split("#")[0]).exists(), f"README.md links to {target}, which does not exist"


@pytest.mark.slow
def test_the_documentation_builds_with_warnings_as_errors(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings_handlers") is None:
        # ci/cpu.sh sets GPUBACKPROP_REQUIRE_DOCS (the test extra installs them): there this is a failure.
        assert not os.environ.get("GPUBACKPROP_REQUIRE_DOCS"), "mkdocs/mkdocstrings missing where CI requires them"
        skip(missing("mkdocs") or missing("mkdocstrings_handlers") or "mkdocs not installed")
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=environment)
    assert done.returncode == 0, done.stdout + done.stderr
    built = tmp_path / "site"
    for page in ("index.html", "guides/training/index.html", "reference/mlp/index.html", "results/index.html"):
        assert (built / page).is_file(), f"{page} missing from the built site"
    reference = (built / "reference" / "mlp" / "index.html").read_text(encoding="utf-8")
    assert "train_step" in reference and "NonFiniteLossError" in reference  # generated from the docstrings
    results = (built / "results" / "index.html").read_text(encoding="utf-8")
    assert "Throughput results" in results  # bench/RESULTS.md included as it is
