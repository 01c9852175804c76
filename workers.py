"""Worker processes that never outlive the process that started them."""
import contextlib
import multiprocessing
import os
import threading
import time
from concurrent import futures


@contextlib.contextmanager
def worker_pool(processes):
    """A concurrent.futures pool of `processes` fresh Python processes (spawned: a new TensorFlow in each)
    that never outlive their parent: each worker ends itself when the parent is gone (killed, SIGTERM), and an
    exception in the parent (Ctrl-C) terminates them, so that no worker keeps training and writing beside a
    restarted sweep (main.py) or build (embedded.py)."""
    pool = futures.ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_die_with_parent, initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:
        for child in multiprocessing.active_children():
            child.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _die_with_parent(parent):
    """Worker initializer: a thread that ends the process once its parent process is gone."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)  # no cleanup: the parent is gone, and nobody reads this process's results
    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
