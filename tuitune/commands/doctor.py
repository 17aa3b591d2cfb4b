"""`tuitune doctor`: report the environment and what to do about each problem."""

from __future__ import annotations

import json
import sys

import click

from tuitune.commands.common import settings


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def doctor(ctx, as_json):
    """Check Python, torch/CUDA (GPU name, memory, driver, bf16, bitsandbytes), the vLLM build, the embedded
    model and disk space."""
    from tuitune.core.doctor import run_checks

    s = settings(ctx)
    checks = run_checks(s.models_dir, s.project)
    if as_json:
        from tuitune.core import hardware

        click.echo(json.dumps({"ok": all(c.ok for c in checks), "checks": [c.to_dict() for c in checks],
                               "machine": hardware.detect_now().to_dict()}))
    else:
        for c in checks:
            click.echo(f"{'ok ' if c.ok else 'FIX'} {c.name:18} {c.found}")
            if not c.ok and c.fix:
                click.echo(f"    -> {c.fix}")
    sys.exit(0 if all(c.ok for c in checks) else 1)
