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


def test_cpu_seconds_follow_the_process_cpu_time() -> None:
    before, started = cpu_seconds(os.getpid()), time.process_time()
    while time.process_time() - started < 0.3:  # burn 0.3 s of this process's CPU
        pass
    after = cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert after - before == pytest.approx(0.3, abs=0.05)  # clock ticks of 10 ms


def test_a_process_that_is_gone_has_no_cpu_time() -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()  # reaped: its /proc entry is gone
    assert cpu_seconds(done.pid) is None
    with cpu_of(done.pid) as used:
        pass
    assert used == [None]
    assert per_request(used, 100) is None


def test_per_request_divides_the_block_s_cpu_time_by_the_requests() -> None:
    with cpu_of(os.getpid()) as used:
        started = time.process_time()
        while time.process_time() - started < 0.2:
            pass
    assert used[0] is not None and used[0] == pytest.approx(0.2, abs=0.05)
    assert per_request(used, 100) == pytest.approx(used[0] * 10)
    assert per_request(used, 0) is None
