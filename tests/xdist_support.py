"""How this pytest process was started by pytest-xdist, for tests/conftest.py and tests/e2e/conftest.py.

xdist's workers see `--dist` as "no" (remote.py sets it so) and `config.option.loadgroup` True when the run used
`--dist loadgroup`; the controller sees `--dist loadgroup` itself."""

from __future__ import annotations


def is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def loadgroup_on(config) -> bool:
    """The run distributes work units by xdist_group (worker or controller)."""
    return bool(getattr(config.option, "loadgroup", False)) or config.getoption("dist", "no") == "loadgroup"


def every_group_runs_here(config) -> bool:
    """Every test of an xdist group that this process collected runs in this process: no xdist at all, or an
    xdist worker under loadgroup (tests/conftest.py puts the tests sharing a server into one group)."""
    if is_worker(config):
        return loadgroup_on(config)
    return config.getoption("dist", "no") == "no" or not config.getoption("numprocesses", None)
