"""Worker processes end with the process that started them: killed, terminated or interrupted."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TESTS
# The parent restores Python's Ctrl-C handler first: a process started in the background by a non-interactive shell
# (`cmd &`, as a CI job may start the suite) inherits SIGINT ignored, and Python then installs no handler, so
# SIGINT would do nothing at all there.
PARENT = """
import signal; signal.signal(signal.SIGINT, signal.default_int_handler)
import runtime, test_workers
with runtime.worker_pool(2) as pool:
    done = [pool.submit(test_workers.sleeper, {folder!r}) for _ in range(2)]
    print(sum(f.result() for f in done))
"""


def sleeper(folder, seconds=60):
    """A worker's task: records its pid, then works for `seconds`. Returns 1."""
    with open(os.path.join(folder, str(os.getpid())), "w"):
        pass
    time.sleep(seconds)
    return 1


def _alive(pid):
    """True while `pid` runs (a zombie, dead but not yet reaped by its new parent, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _start(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(folder=str(tmp_path))], cwd=TESTS,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while len(os.listdir(tmp_path)) < 2 and time.time() < deadline and parent.poll() is None:
        time.sleep(0.1)
    workers = [int(name) for name in os.listdir(tmp_path)]
    assert len(workers) == 2, parent.communicate(timeout=5)[1].decode()[-2000:]
    assert all(_alive(pid) for pid in workers)
    return parent, workers


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_workers_end_when_the_parent_is_stopped(tmp_path, stop):
    parent, workers = _start(tmp_path)
    parent.send_signal(stop)
    parent.wait(timeout=30)
    deadline = time.time() + 10
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), f"workers {workers} outlived their parent ({stop!r})"
