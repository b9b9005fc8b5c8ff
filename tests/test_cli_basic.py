"""CLI smoke tests for the genotype commands, and the one-line error contract."""

import json

import pytest

from cellnas.cli import main
from cellnas.formats import loads
from cellnas.zoo import ZOO, get_genotype


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("zoo", "convert", "draw", "analyze"):
        assert cmd in out


def test_help_shows_a_default_of_zero_but_not_one_of_none(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "motifs", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "seed of the reference subgraphs (default: 0)" in out  # 0 == False once hid it
    assert "(default: None)" not in out


def test_zoo_lists_every_published_cell(capsys):
    assert main(["zoo", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(ZOO)


@pytest.mark.parametrize("fmt", ["json", "darts", "nnabla", "nb301"])
def test_convert_moves_darts_v2_through_every_format_and_back(fmt, tmp_path, capsys):
    out = tmp_path / f"g_{fmt}.txt"
    assert main(["convert", "DARTS_V2", "--to", fmt, "-o", str(out)]) == 0
    assert main(["convert", str(out), "--to", "darts"]) == 0
    text = capsys.readouterr().out
    assert loads(text) == get_genotype("DARTS_V2")


def test_draw_writes_an_image(tmp_path):
    out = tmp_path / "cell.png"
    assert main(["draw", "NASNet", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["convert", "NOPE", "--to", "json"], "neither a zoo genotype"),
        (["convert", "BANANAS", "--to", "nb301"], "cannot encode"),
        (["draw", "DARTS_V2", "-o", "cell.jpg"], ".png, .svg or .pdf"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_unwritable_output_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["convert", "DARTS_V2", "--to", "json", "-o", str(blocker / "g.json")]) == 2
    assert "cannot write" in capsys.readouterr().err


def _interrupted_search():
    from cellnas.search.loop import SearchInterrupted

    return SearchInterrupted("interrupted after epoch 1/2; checkpoint written, continue with: cellnas search --resume")


def _interrupted_training():
    from cellnas.train import TrainInterrupted

    return TrainInterrupted("interrupted after epoch 1/2; checkpoint written, continue with: cellnas train --resume")


@pytest.mark.parametrize(
    "make",
    [
        KeyboardInterrupt,
        _interrupted_search,
        _interrupted_training,
    ],
    ids=["KeyboardInterrupt", "search", "train"],
)
def test_an_interrupted_command_exits_130(make, monkeypatch, capsys):
    import cellnas.commands.zoo as zoo

    def interrupted(args):
        raise make()

    monkeypatch.setattr(zoo, "run", interrupted)
    assert main(["zoo"]) == 130  # 128 + SIGINT, the shell's convention; 2 is argparse's usage error
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
