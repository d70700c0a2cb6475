"""Shell completion for bash, zsh and fish: click's own, with `then` starting a new command.

The completion scripts call `ndpipe` with `_NDPIPE_COMPLETE=<shell>_complete` and the words typed
so far in COMP_WORDS / COMP_CWORD; these tests do the same, in process (fast), and bash's script is
also run for real, by bash, against the checkout's bin/ndpipe.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import click
import pytest

from ndpipe.cli import cli, main
from tests.conftest import shell

VERBS = cli.list_commands(click.Context(cli))

Run = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def ndpipe(monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]) -> Run:
    """`ndpipe` with no arguments and ENV set, run in process as a completion script runs it."""

    def run(**env: str) -> subprocess.CompletedProcess[bytes]:
        for name in ("_NDPIPE_COMPLETE", "COMP_WORDS", "COMP_CWORD"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capfdbinary.readouterr()
        returncode = main([])
        out, err = capfdbinary.readouterr()
        return subprocess.CompletedProcess(["ndpipe"], returncode, out, err)

    return run


@pytest.fixture
def bash_complete(ndpipe: Run) -> Callable[[str], list[str]]:
    def offered(line: str) -> list[str]:
        """What bash is offered for LINE, the cursor at its end (after a space: a new word)."""
        words = line.split()
        current = len(words) if line.endswith(" ") else len(words) - 1
        done = ndpipe(_NDPIPE_COMPLETE="bash_complete", COMP_WORDS=line, COMP_CWORD=str(current))
        assert done.returncode == 0, done.stderr
        assert done.stderr == b""
        return [item.split(",", 1)[1] for item in done.stdout.decode().splitlines() if item]

    return offered


def test_the_first_word_offers_every_verb(bash_complete):
    assert bash_complete("ndpipe ") == VERBS
    assert {"fetch", "filter", "escape-csv", "upsert-patch", "import"} <= set(VERBS)


def test_a_prefix_offers_the_verbs_it_starts(bash_complete):
    assert bash_complete("ndpipe fi") == ["filter"]
    assert bash_complete("ndpipe s") == ["select", "sample", "sort"]


def test_options_of_the_verb_are_offered(bash_complete):
    offered = bash_complete("ndpipe dedupe --")
    assert {"--ignore-case", "--dups", "--on-error", "--help"} <= set(offered)
    assert all(option.startswith("--") for option in offered)


def test_then_starts_a_new_command(bash_complete):
    assert bash_complete("ndpipe fetch export.json.gz then s") == ["select", "sample", "sort"]
    assert bash_complete("ndpipe head -n 3 then filter x then ") == VERBS
    offered = bash_complete("ndpipe fetch a.ndjson then head -n 3 then dedupe --i")
    assert offered == ["--ignore-case"]


def test_then_itself_is_offered_after_a_command(bash_complete):
    assert bash_complete("ndpipe head -n 3 th") == ["then"]
    assert "then" not in bash_complete("ndpipe th")


@pytest.mark.parametrize("shell_name", ["bash", "zsh", "fish"])
def test_each_shell_gets_its_script(shell_name, ndpipe):
    done = ndpipe(_NDPIPE_COMPLETE=f"{shell_name}_source")
    assert done.returncode == 0, done.stderr
    script = done.stdout.decode()
    assert "_ndpipe_completion" in script
    assert f"_NDPIPE_COMPLETE={shell_name}_complete" in script


def test_zsh_completes_verbs_with_their_help(ndpipe):
    done = ndpipe(
        _NDPIPE_COMPLETE="zsh_complete", COMP_WORDS="ndpipe filter x then se", COMP_CWORD="4"
    )
    assert done.returncode == 0, done.stderr
    # zsh gets type, value and help, a line each.
    lines = done.stdout.decode().splitlines()
    assert lines[:2] == ["plain", "select"]
    assert lines[2].startswith("Keep and rename fields")


def test_fish_completes_verbs_and_options(ndpipe):
    def fish(words: str, current: str) -> list[str]:
        done = ndpipe(_NDPIPE_COMPLETE="fish_complete", COMP_WORDS=words, COMP_CWORD=current)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.decode().splitlines()
        return [line.split(",", 1)[1].split("\t")[0] for line in lines if line]

    assert fish("ndpipe head then so", "so") == ["sort"]
    assert "--ignore-case" in fish("ndpipe dedupe --ig", "--ig")


def test_bash_script_completes_in_bash():
    script = (
        'eval "$(_NDPIPE_COMPLETE=bash_source ndpipe)"\n'
        "COMP_WORDS=(ndpipe fetch export.json.gz then es)\n"
        "COMP_CWORD=4\n"
        "_ndpipe_completion ndpipe\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = shell(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == ["escape-csv"]


def test_a_bad_instruction_fails_quietly(ndpipe):
    for instruction in ("tcsh_source", "bash_complete"):  # unknown shell; no COMP_CWORD
        done = ndpipe(_NDPIPE_COMPLETE=instruction, COMP_WORDS="")
        assert done.returncode == 1
        assert b"Traceback" not in done.stderr
