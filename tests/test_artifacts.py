"""artifacts.py: atomic writes, and the removal of what killed writers left (by lock, not by process id)."""
import os
import signal
import subprocess
import sys

import pytest

import artifacts


def test_write_replaces_atomically_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "deep" / "results.txt"
    artifacts.write_text(str(path), "one\n")
    artifacts.write_text(str(path), "two\n", fsync=True)
    assert path.read_text() == "two\n"
    assert os.listdir(path.parent) == ["results.txt"]


def test_error_removes_the_temporary_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.weights.h5"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with artifacts.atomic_path(str(path)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.weights.h5"]


def test_a_folder_replaces_a_folder(tmp_path):
    path = tmp_path / "generator"
    for content in ("first", "second"):
        with artifacts.atomic_path(str(path)) as tmp:
            os.makedirs(tmp)
            (open(os.path.join(tmp, content), "w")).close()
    assert os.listdir(path) == ["second"]
    assert os.listdir(tmp_path) == ["generator"]


WRITER = """
import sys, time
import artifacts
with artifacts.atomic_path(sys.argv[1]) as tmp:
    open(tmp, "w").close()
    print(tmp, flush=True)
    time.sleep(600)
"""


def test_stale_temporaries_go_live_ones_stay(tmp_path):
    """A killed writer's temporary (its lock is free) is removed with its lock file; a running writer's
    temporary stays, whatever its process id says; so do finished files."""
    killed = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "a" / "killed.tfrecord")],
                              stdout=subprocess.PIPE, text=True)
    running = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "b" / "running.tfrecord")],
                               stdout=subprocess.PIPE, text=True)
    try:
        killed_tmp, running_tmp = killed.stdout.readline().strip(), running.stdout.readline().strip()
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        stale_folder = tmp_path / "c" / "generator.tmp-4-2"  # a SavedModel folder left without its lock file
        os.makedirs(stale_folder / "variables")
        (tmp_path / "c" / "done.tfrecord").write_bytes(b"x")
        removed = artifacts.remove_stale_temporaries(str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c"))
        assert sorted(removed) == sorted([killed_tmp, str(stale_folder)])
        assert os.listdir(tmp_path / "a") == []
        assert os.path.exists(running_tmp) and os.path.exists(running_tmp + artifacts.LOCK_SUFFIX)
        assert os.listdir(tmp_path / "c") == ["done.tfrecord"]
    finally:
        running.kill()
        running.wait()


def test_an_orphan_lock_of_a_dead_writer_goes_at_once(tmp_path):
    """A writer killed between creating its lock file and its temporary leaves the lock alone: removed at once when
    its process is gone (the resume right after a kill; it used to stay for an hour), kept while the process that
    named it runs (it may be about to take it)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / f"step1.weights.h5.tmp-{dead.pid}-3{artifacts.LOCK_SUFFIX}"
    alive = tmp_path / f"step2.weights.h5.tmp-{os.getppid()}-4{artifacts.LOCK_SUFFIX}"  # pytest's parent runs
    for lock in (gone, alive):
        lock.write_bytes(b"")
    artifacts.remove_stale_temporaries(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [alive.name]


def test_a_writer_that_finishes_during_the_cleaning_is_left_alone(tmp_path, monkeypatch):
    """Another process of the sweep renames its temporary and removes its lock between the listing and the look at
    each (seen: a sweep's experiment failed with FileNotFoundError on such a lock): nothing raises, nothing is
    reported removed, the finished file stays."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp = tmp_path / f"80.png.tmp-{live.pid}-1"
        lock_only = tmp_path / f"81.png.tmp-{live.pid}-2{artifacts.LOCK_SUFFIX}"  # its temporary not made yet
        tmp.write_bytes(b"png")
        lock_only.write_bytes(b"")
        held, getmtime = artifacts._held, os.path.getmtime

        def writer_finishes(path):  # the writer renames its temporary, then drops its lock, as atomic_path does
            if os.path.exists(tmp):
                os.rename(tmp, tmp_path / "80.png")
            return held(path)

        def lock_dropped(path):
            if str(path) == str(lock_only):
                os.remove(lock_only)
            return getmtime(path)
        monkeypatch.setattr(artifacts, "_held", writer_finishes)
        monkeypatch.setattr(artifacts, "_writer_gone", lambda name: False)  # decided by the lock's age
        monkeypatch.setattr(os.path, "getmtime", lock_dropped)
        assert artifacts.remove_stale_temporaries(str(tmp_path)) == []
        assert sorted(os.listdir(tmp_path)) == ["80.png"]
    finally:
        live.kill()
        live.wait()


def test_checkpoint_exists_only_when_complete(tmp_path):
    path = str(tmp_path / "step0")
    open(path + artifacts.CHECKPOINT_SUFFIX + ".tmp-9-0", "w").close()
    assert not artifacts.checkpoint_exists(path)
    open(path + ".index", "w").close()  # the original's TF1 checkpoint
    assert artifacts.checkpoint_exists(path)
