"""``technoshare dev-stack`` stops its children within one shared bound: every child gets
SIGTERM at once, and what still runs when ``STOP_SECONDS`` have passed is killed, however many
children ignore the signal (a wait per child would add up on a loaded machine)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from services import dev_stack
from services.processes import ManagedProcess

STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)
POLITE = "import sys, time\nprint('ready', flush=True)\ntime.sleep(120)\n"


def _started(name: str, code: str, tmp_path: Path) -> ManagedProcess:
    proc = ManagedProcess(name, [sys.executable, "-c", code], {}, tmp_path / f"{name}.log")
    deadline = time.monotonic() + 20
    while "ready" not in proc.log():
        assert time.monotonic() < deadline, f"{name} did not start"
        time.sleep(0.05)
    return proc


def test_children_that_ignore_sigterm_are_killed_within_the_shared_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dev_stack, "STOP_SECONDS", 1.0)
    stack = object.__new__(dev_stack.DevStack)
    stack.redis = None
    stack.children = [_started("polite", POLITE, tmp_path)]
    stack.children += [_started(f"stubborn{i}", STUBBORN, tmp_path) for i in range(4)]
    try:
        started = time.monotonic()
        stack.stop()
        took = time.monotonic() - started
        assert all(not child.alive() for child in stack.children)
        # one shared second, not a wait per stubborn child (4 x 10 s before)
        assert took < 8, f"stopping took {took:.1f} s"
    finally:
        for child in stack.children:
            if child.alive():
                child.proc.kill()
                child.proc.wait(5)
