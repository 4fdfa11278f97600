"""Delimited text data files as spreadsheets and NumPy write them (issue 15, part 7): the delimiter
detected (or --delimiter), said on the data line, comments, a trailing delimiter, .tsv and .txt,
and errors that name exactly what was seen."""
import re

import numpy
import pytest

import gpubackprop as gb
from gpubackprop import cli
from gpubackprop.cli import text as cli_text

ROWS = 40


def table():
    rng = numpy.random.default_rng(0)
    X = numpy.round(rng.normal(size=(ROWS, 3)), 3)
    return X, numpy.round(X.sum(axis=1), 3)


def lines(delimiter, header=True, end=""):
    X, y = table()
    out = [delimiter.join(["a", "b", "c", "t"]) + end] if header else []
    out += [delimiter.join(f"{v:g}" for v in (*x, t)) + end for x, t in zip(X, y)]
    return "\n".join(out) + "\n"


def train(capsys, path, *args):
    code = cli.main(["train", "--backend", "numpy", "--data", str(path), "--epochs", "1", "--dtype", "float64",
                     "--val-fraction", "0", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


DIALECTS = [  # (file name, content, words on the data line)
    ("semicolon.csv", lines(";"), "';'-separated (detected), header"),
    ("tabs.csv", lines("\t"), "tab-separated (detected), header"),
    ("tabs.tsv", lines("\t"), "tab-separated (.tsv), header"),
    ("comment.csv", "# exported 2026-11-29 by hand\n" + lines(","), "','-separated (detected), header, 1 comment line skipped"),
    ("trailing.csv", lines(",", end=","), "','-separated (detected), a ',' at the end of every line ignored, header"),
    ("trailing_semicolon.csv", lines(";", end=";"), "';'-separated (detected), a ';' at the end of every line ignored, header"),
    ("pipes.csv", lines("|", header=False), "'|'-separated (detected)"),
    ("spaces.txt", lines("   ", header=False), "whitespace-separated (detected)"),
    ("inline.csv", lines(",").replace("\n", " # note\n", 3), "','-separated (detected), header"),
]


@pytest.mark.parametrize("name, content, dialect", DIALECTS, ids=[d[0] for d in DIALECTS])
def test_dialects_are_detected_said_and_read_as_their_numbers(tmp_path, capsys, name, content, dialect):
    (tmp_path / name).write_text(content)
    code, out, err = train(capsys, tmp_path / name)
    assert code == 0, err
    data = next(line for line in out.splitlines() if line.startswith("data: "))
    assert f"({dialect}" in data and f"X ({ROWS}, 3), Y ({ROWS}, 1)" in data, data
    X, y = table()
    got = cli_text.read_table(tmp_path / name)
    numpy.testing.assert_array_equal(got.values, numpy.c_[X, y])  # every number, in its column
    assert got.header == (["a", "b", "c", "t"] if "header" in dialect else None)


def test_numpy_savetxt_files_read_back_with_their_commented_header(tmp_path, capsys):
    X, y = table()
    numpy.savetxt(tmp_path / "np.txt", numpy.c_[X, y], header="a b c t")  # "# a b c t", space-separated
    code, out, err = train(capsys, tmp_path / "np.txt", "--target-columns", "t")
    assert code == 0, err
    assert "whitespace-separated (detected), header in a comment line, 1 comment line skipped" in out
    assert cli_text.read_table(tmp_path / "np.txt").header == ["a", "b", "c", "t"]


def test_predict_reads_the_same_dialects(tmp_path, capsys):
    X, y = table()
    numpy.savez(tmp_path / "d.npz", X=X, Y=y)
    assert cli.main(["train", "--backend", "numpy", "--data", str(tmp_path / "d.npz"), "--epochs", "1",
                     "--dtype", "float64", "--save", str(tmp_path / "m.npz")]) == 0
    expected = gb.MLP.load(tmp_path / "m.npz", backend="numpy").predict(X)
    (tmp_path / "x.tsv").write_text("\n".join("\t".join(f"{v:g}" for v in x) for x in X) + "\n")
    capsys.readouterr()
    assert cli.main(["predict", "--backend", "numpy", "--model", str(tmp_path / "m.npz"),
                     "--data", str(tmp_path / "x.tsv"), "--out", str(tmp_path / "y.npz")]) == 0
    assert "tab-separated (.tsv)" in capsys.readouterr().out
    with numpy.load(tmp_path / "y.npz") as archive:
        numpy.testing.assert_array_equal(archive["Y"], expected)
    (tmp_path / "x.csv").write_text("a;b;c\n" + "\n".join(";".join(f"{v:g}" for v in x) for x in X) + "\n")
    assert cli.main(["predict", "--backend", "numpy", "--model", str(tmp_path / "m.npz"),
                     "--data", str(tmp_path / "x.csv")]) == 0
    out, err = capsys.readouterr()
    assert "read" in err and "';'-separated (detected), header" in err  # stdout holds the outputs alone
    numpy.testing.assert_array_equal(numpy.loadtxt(out.splitlines()[1:], delimiter=",", ndmin=2), expected)


def test_one_column_needs_no_delimiter(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("x\n" + "\n".join(f"{i / 10}" for i in range(20)) + "\n")
    table_ = cli_text.read_table(tmp_path / "x.csv")
    assert table_.values.shape == (20, 1) and table_.header == ["x"] and table_.dialect.startswith("one column")
    code, out, err = train(capsys, tmp_path / "x.csv")  # training needs features and targets
    assert code == 2 and "need at least 2 columns" in err and "one column" in err


@pytest.mark.parametrize("option, value", [("--delimiter", ";"), ("--delimiter", "semicolon")])
def test_the_delimiter_can_be_forced(tmp_path, capsys, option, value):
    # one column of labels with a ',' in the header name: detection alone could not be sure
    (tmp_path / "d.csv").write_text("x;y,z\n" + "".join(f"{i};{i % 2}\n" for i in range(20)))
    code, out, err = train(capsys, tmp_path / "d.csv", option, value)
    assert code == 0, err
    assert "(';'-separated (--delimiter), header)" in out


@pytest.mark.parametrize("content, args, fragment", [
    # decimal commas in a ';' file
    ("a;b;t\n1,5;2,25;3\n4;5;6\n", [], "'1,5' is not a number (line 2); a decimal comma? numbers need a decimal point (1.5)"),
    # the wrong delimiter forced: the cell says which one it holds
    ("a;b;t\n1;2;3\n4;5;6\n", ["--delimiter", ","], "the line was split at ',' and the cell holds ';': --delimiter ';'?"),
    # a trailing delimiter on some lines only, a ragged row: the line and how it was split
    ("1,2,3\n4,5,6,\n7,8,9\n", [], "data row 2: 4 column(s), expected 3 as in the first row (this is line 2, split at ',')"),
    ("# only a comment\n", [], "the file is empty (it holds 1 comment line(s) only)"),
    ("1;2;3\n", ["--delimiter", "ab"], "--delimiter 'ab': expected one character"),
])
def test_errors_name_exactly_what_was_seen(tmp_path, capsys, content, args, fragment):
    (tmp_path / "d.csv").write_text(content)
    code, out, err = train(capsys, tmp_path / "d.csv", *args)
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
    assert "epoch" not in out


def test_npz_data_takes_no_delimiter(tmp_path, capsys):
    numpy.savez(tmp_path / "d.npz", X=numpy.zeros((4, 2)), Y=numpy.zeros(4))
    code, out, err = train(capsys, tmp_path / "d.npz", "--delimiter", ";")
    assert code == 2 and re.search(r"--delimiter applies to text files only", err)
