"""Delimited text data files for the command line (.csv, .tsv, .txt): numbers in columns, in the
dialects spreadsheets and NumPy write.

- The delimiter is ``--delimiter`` when given (a character, or tab, comma, semicolon, pipe,
  whitespace), tab for ``.tsv``, else detected from the first lines: ``csv.Sniffer``'s guess
  first, then ``,`` ``;`` tab ``|`` whitespace, the first that splits every sampled line into the
  same number of columns, all numbers but for a header (so a ``;`` file whose cells hold decimal
  commas is still not taken as ``,``-separated). A file of one column needs none.
- Lines starting with ``#`` are comments (as numpy.loadtxt), and so is the rest of a line after a
  ``#``; a last leading comment line that names every column is the header (as numpy.savetxt(...,
  header=...) writes it, and numpy.genfromtxt(names=True) reads it).
- A first line with no number in it is the header. Quoted cells, spaces around numbers, blank lines
  and Excel's UTF-8 byte-order mark are read. A delimiter at the end of every line (an empty last
  column) is ignored.
- The numbers go through numpy.loadtxt (3.5x faster than a loop over cells on 200k rows); what it
  refuses goes through a cell loop that names the row, column and cell at fault, and says how the
  line was split.

``read_table`` returns a ``Table``: ``values`` (rows, columns) float64, ``header`` (names or None)
and ``dialect`` (words for the user: "';'-separated (detected), header, 1 comment line").
"""
from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy

SUFFIXES = (".csv", ".tsv", ".txt")
WHITESPACE = " "  # stands for any run of spaces and tabs
NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": WHITESPACE,
         "whitespace": WHITESPACE}
_CANDIDATES = (",", ";", "\t", "|", WHITESPACE)
_SAMPLE_LINES = 50
_DECIMAL_COMMA = re.compile(r"[-+]?\d*,\d+([eE][-+]?\d+)?")
DELIMITER_HELP = ("text files: the column delimiter, a character or one of tab, comma, semicolon, pipe, whitespace "
                  "(default: tab for .tsv, else detected from the first lines)")


class TextDataError(ValueError):
    """A text data file that cannot be read as columns of numbers; the message says where and why.

    For a cell that is not a number, ``column`` is its 0-based column, ``header`` the file's header
    (or None) and ``width`` its number of columns (so a caller can tell a target column); else None."""

    column = header = width = None


@dataclass
class Table:
    values: numpy.ndarray
    header: list | None
    dialect: str


def parse_delimiter(text):
    """``--delimiter``'s value as the delimiter character (WHITESPACE for whitespace), or None."""
    if text is None:
        return None
    value = NAMES.get(text.lower(), text)
    if len(value) != 1 or value in '"#.-+0123456789eE\r\n':
        raise TextDataError(f"--delimiter {text!r}: expected one character that cannot be part of a number "
                            f"(such as , ; |) or one of {', '.join(NAMES)}")
    return WHITESPACE if value.isspace() and value != "\t" else value


def describe(delimiter) -> str:
    return {"\t": "tab", WHITESPACE: "whitespace"}.get(delimiter, repr(delimiter))


def _number(cell):
    try:
        return float(cell)
    except ValueError:
        return None


def _uncommented(line: str) -> str:
    return line.split("#", 1)[0] if "#" in line else line


def _split(line: str, delimiter) -> list:
    if delimiter == WHITESPACE:
        return line.split()
    return next(csv.reader([line], delimiter=delimiter, quotechar='"'))


def _shape_of(rows):
    """(width, trailing) when every row has the same number of cells (or all but one leading
    header row, one fewer, as a header without the trailing delimiter), else None; ``trailing``:
    the last cell is empty on every data row."""
    data = rows[1:] if rows and all(_number(cell) is None for cell in rows[0]) else rows
    if not data:
        return None
    widths = {len(row) for row in data}
    if len(widths) != 1:
        return None
    width = widths.pop()
    trailing = width > 1 and all(not row[-1].strip() for row in data)
    if trailing:
        width -= 1
    if len(data) < len(rows) and len(rows[0]) not in (width, width + 1):
        return None
    return width, trailing


def _clean(rows, shape) -> bool:
    """Every data cell of ``rows`` (trailing empty cell aside) a number."""
    width, _ = shape
    data = rows[1:] if all(_number(cell) is None for cell in rows[0]) else rows
    return all(_number(cell) is not None for row in data for cell in row[:width])


def _detect(sample):
    """The delimiter of the sampled (number, line) pairs, or None for one column. A delimiter that
    splits the lines into consistent columns of numbers wins; failing that, consistent columns
    (preferring those whose odd cells are decimal commas), then the one that splits the first line
    most: the cell loop then names the row and cell at fault, and how the line was split."""
    lines = [_uncommented(line) for _, line in sample]
    try:
        sniffed = csv.Sniffer().sniff("\n".join(lines), delimiters="".join(_CANDIDATES)).delimiter
    except csv.Error:
        sniffed = None
    order = ([sniffed] if sniffed in _CANDIDATES else []) + [d for d in _CANDIDATES if d != sniffed]
    shaped = []
    for delimiter in order:
        rows = [_split(line, delimiter) for line in lines]
        shape = _shape_of(rows)
        if shape is None or shape[0] < 2:
            continue
        if _clean(rows, shape):
            return delimiter
        odd = [cell.strip() for row in rows[1:] for cell in row[:shape[0]] if _number(cell) is None]
        shaped.append((not all(_DECIMAL_COMMA.fullmatch(cell) for cell in odd), delimiter))
    if shaped:
        return min(shaped, key=lambda item: item[0])[1]  # (stable: the earlier of equals)
    widest = max(order, key=lambda d: len(_split(lines[0], d)))
    return widest if len(_split(lines[0], widest)) > 1 else None


def read_table(path, delimiter=None) -> Table:
    """The numbers of the delimited text file ``path``; TextDataError saying what is wrong."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # utf-8-sig: Excel's byte-order mark
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise TextDataError(f"{path} is not a readable text file ({type(exc).__name__}: {exc})") from None
    content, leading_comments, comments = [], [], 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            comments += 1
            if not content:
                leading_comments.append(stripped[1:].strip())
        elif stripped:
            content.append((number, line))
    if not content:
        raise TextDataError(f"{path}: the file is empty" + (f" (it holds {comments} comment line(s) only)" if comments else ""))
    notes = []
    if delimiter is not None:
        notes.append(f"{describe(delimiter)}-separated (--delimiter)")
    elif path.suffix.lower() == ".tsv":
        delimiter = "\t"
        notes.append("tab-separated (.tsv)")
    else:
        delimiter = _detect(content[:_SAMPLE_LINES])
        notes.append("one column" if delimiter is None else f"{describe(delimiter)}-separated (detected)")
    split = (lambda line: [_uncommented(line).strip()]) if delimiter is None else \
        (lambda line: _split(_uncommented(line), delimiter))

    first = split(content[0][1])
    header = None
    if all(_number(cell) is None for cell in first):
        header, content = [cell.strip() for cell in first], content[1:]
        if not content:
            raise TextDataError(f"{path}: the file has a header but no data rows")
    sample = [split(line) for _, line in content[:_SAMPLE_LINES]]
    width = len(sample[0])
    trailing = width > 1 and all(len(row) == width and not row[-1].strip() for row in sample)
    if trailing:
        width -= 1
        notes.append(f"a {describe(delimiter)} at the end of every line ignored")
    if header is not None:
        if len(header) == width + 1 and not header[-1]:  # a trailing delimiter on the header line
            header = header[:-1]
        notes.append("header")
        if len(header) != width:
            raise TextDataError(f"{path}: the header names {len(header)} column(s) but the first data row "
                                f"(line {content[0][0]}) has {width}")
    elif leading_comments:
        names = [cell.strip() for cell in split(leading_comments[-1])] if delimiter is not None else [leading_comments[-1]]
        if len(names) == width and all(name and _number(name) is None for name in names):
            header = names
            notes.append("header in a comment line")
    if comments:
        notes.append(f"{comments} comment line{'s' if comments > 1 else ''} skipped")
    values = _fast(content, delimiter, width, trailing)
    if values is None:
        values = _cells(path, content, split, width, trailing, header, delimiter)
    return Table(values, header, ", ".join(notes))


def _fast(content, delimiter, width, trailing=False):
    """numpy.loadtxt's reading of the data lines, or None to leave them to the cell loop (which
    reads the same numbers, or names the row and cell that stop loadtxt)."""
    lines = (line for _, line in content)
    if trailing:  # the last, empty column: cut off, so that loadtxt still sees every ragged row
        lines = (_cut(line, delimiter) for line in lines)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            values = numpy.loadtxt(lines, delimiter=None if delimiter == WHITESPACE else (delimiter or ","),
                                   comments="#", quotechar='"', ndmin=2, dtype=numpy.float64)
        except (ValueError, IndexError):  # a cell that is not a number, a ragged row, ...
            return None
    return values if values.shape == (len(content), width) else None


def _cut(line, delimiter):
    line = _uncommented(line).rstrip()
    return line[:-1] if line.endswith(delimiter) else line


def _cells(path, content, split, width, trailing, header, delimiter):
    """The data lines cell by cell, with a TextDataError naming the row, column and cell of a problem."""
    values = numpy.empty((len(content), width))
    for r, (number, line) in enumerate(content):
        row = split(line)
        if trailing and len(row) == width + 1 and not row[-1].strip():
            row = row[:-1]
        where = f"{path}, data row {r + 1}"
        if len(row) != width:
            raise TextDataError(f"{where}: {len(row)} column(s), expected {width} as in the first row (this is line "
                                f"{number}, split at {describe(delimiter) if delimiter else 'nothing: one column'})")
        for c, cell in enumerate(row):
            value = _number(cell)
            if value is None:
                column = f"column {c}" + (f" ({header[c]!r})" if header else "")
                error = TextDataError(f"{where}, {column}: {cell.strip()!r} is not a number (line {number})"
                                      f"{_why(cell, delimiter)}")
                error.column, error.header, error.width = c, header, width
                raise error
            values[r, c] = value
    return values


def _why(cell, delimiter) -> str:
    cell = cell.strip()
    if _DECIMAL_COMMA.fullmatch(cell):
        return f"; a decimal comma? numbers need a decimal point ({cell.replace(',', '.')})"
    seen = [d for d in _CANDIDATES if d != delimiter and d != WHITESPACE and d in cell]
    if seen:
        return (f"; the line was split at {describe(delimiter) if delimiter else 'nothing (one column)'} and "
                f"the cell holds {describe(seen[0])}: --delimiter {describe(seen[0])}?")
    return ""
