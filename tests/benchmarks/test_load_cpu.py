"""`benchmarks.load`'s CPU-per-request measurement: the server's CPU time read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.load import cpu_of, cpu_seconds, per_request

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

TICKS = 3 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.03  # /proc counts whole clock ticks


def _burn(seconds: float) -> None:
    started = time.process_time()
    while time.process_time() - started < seconds:
        pass


def test_cpu_seconds_follow_the_process_cpu_time() -> None:
    # time.process_time is this process's CPU time too (every thread): the two must agree
    p0, c0 = time.process_time(), cpu_seconds(os.getpid())
    _burn(0.3)
    c1, p1 = cpu_seconds(os.getpid()), time.process_time()
    assert c0 is not None and c1 is not None
    assert c1 - c0 >= 0.3 - TICKS
    assert c1 - c0 == pytest.approx(p1 - p0, abs=TICKS)


def test_a_process_that_is_gone_has_no_cpu_time() -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()  # reaped: its /proc entry is gone
    assert cpu_seconds(done.pid) is None
    with cpu_of(done.pid) as used:
        pass
    assert used == [None]
    assert per_request(used, 100) is None


def test_per_request_divides_the_block_s_cpu_time_by_the_requests() -> None:
    p0 = time.process_time()
    with cpu_of(os.getpid()) as used:
        _burn(0.2)
    p1 = time.process_time()
    assert used[0] is not None and used[0] == pytest.approx(p1 - p0, abs=TICKS)
    assert per_request(used, 100) == pytest.approx(used[0] * 10)
    assert per_request(used, 0) is None
