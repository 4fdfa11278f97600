"""MkDocs hook: API reference pages of modules that are not in this source tree yet.

A page whose Markdown holds ``<!-- requires: gpubackprop.sklearn -->`` documents a module that may be
missing from a given checkout (a feature merged separately). When the module's source file is absent,
every ``::: gpubackprop.sklearn...`` directive of the page is replaced by a note saying so, instead of
mkdocstrings failing the strict build; when the file is present (the normal case) the page is left
exactly as written. tests/test_docs.py reads the same marker for the Python examples.
"""
import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.requires")
ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"<!--\s*requires:\s*(.*?)\s*-->")


def module_source_present(name: str) -> bool:
    """Whether the module ``name`` of this repository has a source file (no import: static, as griffe reads)."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def on_page_markdown(markdown, page, **kwargs):
    for match in MARKER.finditer(markdown):
        for name in match.group(1).split():
            directive = re.compile(rf"^:::\s*{re.escape(name)}\b.*$(\n    .*$)*", re.M)
            if directive.search(markdown) and not module_source_present(name):
                log.info("%s: %s is not in this source tree; its reference is left out", page.file.src_path, name)
                note = (f'!!! note "Not in this build"\n    `{name}` is not part of this checkout of '
                        f"gpubackprop, so its reference could not be generated.\n")
                markdown = directive.sub(note, markdown)
    return markdown
