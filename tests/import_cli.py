"""`tuitune import` through click's runner, for the import tests: `cli()` runs it, `refused()` also checks the
refusal (exit 2, the words in the message, nothing stored)."""

from __future__ import annotations

from click.testing import CliRunner

from tuitune.cli import main
from tuitune.core.data.store import Store


def cli(project, *args):
    return CliRunner().invoke(main, ["--project", str(project), "import", *map(str, args)])


def refused(project, *args, words=()):
    """Import via the CLI: exit 2, every word in the message, nothing stored."""
    res = cli(project, *args)
    assert res.exit_code == 2, res.output
    for w in words:
        assert w in res.stderr, (w, res.stderr)
    with Store.open(project) as st:
        assert st.count() == 0
    return res.stderr
