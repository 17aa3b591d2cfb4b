"""`tuitune chat --url` takes the server's key from --api-key-env VAR or --api-key-file PATH (not visible in `ps`);
--api-key still works with a warning. Bad key options are refused (exit 2) before anything connects or starts.
The happy paths against a real vLLM server are in tests/e2e/test_chat.py."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tuitune.cli import main

URL = "http://127.0.0.1:9/v1"  # nothing listens on port 9 (discard): any attempt to connect would fail differently


def chat(tmp_path, *args, env=None):
    return CliRunner().invoke(main, ["--project", str(tmp_path), "chat", *args, "m", "--prompt", "hi"], env=env)


@pytest.mark.parametrize(("args", "says"), [
    (["--url", URL, "--api-key-env", "TUITUNE_TEST_NO_SUCH_VAR"], "TUITUNE_TEST_NO_SUCH_VAR is not set"),
    (["--url", URL, "--api-key-env", "TUITUNE_TEST_EMPTY"], "TUITUNE_TEST_EMPTY is not set or empty"),
    (["--url", URL, "--api-key-file", "{missing}"], "cannot read it"),
    (["--url", URL, "--api-key-file", "{empty}"], "the file is empty"),
    (["--url", URL, "--api-key-env", "K", "--api-key-file", "{empty}"], "one way only"),
    (["--url", URL, "--api-key", "k", "--api-key-env", "K"], "one way only"),
    (["--api-key-env", "K"], "is the key for --url"),
])
def test_bad_key_options_exit_2_and_say_what_to_do(tmp_path, args, says):
    (tmp_path / "empty").write_text("\n  \n", encoding="utf-8")
    args = [a.format(missing=tmp_path / "missing", empty=tmp_path / "empty") for a in args]
    r = chat(tmp_path, *args, env={"TUITUNE_TEST_EMPTY": "", "TUITUNE_TEST_NO_SUCH_VAR": None, "K": "x"})
    assert r.exit_code == 2, r.output
    assert says in r.output and "Traceback" not in r.output
    assert "starting vLLM" not in r.output  # refused before anything started


def test_key_from_env_or_file_is_used_and_argv_key_is_warned_about(tmp_path, monkeypatch):
    """Which key reaches the client: the one from the variable or the file's first line; --api-key warns."""
    from tuitune.commands import serve

    seen = []

    def fake_backends(ctx, pool, models, *, url, api_key, **kw):
        seen.append(api_key)
        raise SystemExit(0)  # stop before connecting: only the key resolution is under test here

    monkeypatch.setattr(serve, "_backends_for", fake_backends)
    (tmp_path / "key").write_text("from-file\nsecond line ignored\n", encoding="utf-8")
    r1 = chat(tmp_path, "--url", URL, "--api-key-env", "MY_KEY", env={"MY_KEY": "from-env"})
    r2 = chat(tmp_path, "--url", URL, "--api-key-file", str(tmp_path / "key"))
    r3 = chat(tmp_path, "--url", URL, "--api-key", "from-argv")
    assert seen == ["from-env", "from-file", "from-argv"], (r1.output, r2.output, r3.output)
    assert "warning" not in r1.output + r2.output
    assert "warning: --api-key puts the key on the command line" in r3.output and "ps" in r3.output
