"""Every `cellnas ...` command shown in the README parses with the current command line (options renamed or
removed would otherwise leave the README teaching commands that fail)."""

import re
import shlex
from pathlib import Path

import pytest

from cellnas.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("cellnas "):
                commands.append(line)
    return commands


def test_the_readme_shows_commands():
    assert len(_commands()) >= 20


@pytest.mark.parametrize("command", _commands())
def test_readme_command_parses(command):
    argv = shlex.split(command)[1:]
    if "--help" in argv or "-h" in argv:
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 0
        return
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of rejecting
        pytest.fail(f"README command does not parse ({exc.code}): {command}")
    assert getattr(args, "func", None) is not None, command
