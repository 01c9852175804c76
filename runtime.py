"""The process: TensorFlow's oneDNN CPU kernels, and worker processes that never outlive their parent.

Import this module before TensorFlow (every entry point does). TensorFlow enables oneDNN by default only on
x86 CPUs with AVX-512. Without it, this project's CPU training runs on TensorFlow's generic kernels, which
have no gradient of a dilated convolution (model.Conv2D then falls back to space_to_batch) and are 7-15x
slower on the embedded benchmark's network (benchmarks/BENCHMARKS.md, "oneDNN"). An explicit
TF_ENABLE_ONEDNN_OPTS in the environment is left as it is.
"""
import contextlib
import multiprocessing
import os
import platform
import sys
import threading
import time
from concurrent import futures

if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


@contextlib.contextmanager
def worker_pool(processes):
    """A concurrent.futures pool of `processes` fresh Python processes (spawned: a new TensorFlow in each)
    that never outlive their parent: each worker ends itself when the parent is gone (killed, SIGTERM), and an
    exception in the parent (Ctrl-C) terminates them, so that no worker keeps training and writing beside a
    restarted sweep (main.py) or build (embedded_benchmark)."""
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


def cpu_flags():
    """(model name, set of the CPU's feature flags) from /proc/cpuinfo (("", set()) where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return platform.processor(), set()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor())
    return name, set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))


def cpu_kind():
    """The CPU kind every timing is named with: "<cores>-core AVX-512 (AVX512-BF16), <model name>",
    "<cores>-core AVX2, <model name>", ... (timings differ between the kinds several times over, and results
    between vendors: README "Performance", "Every CPU kind")."""
    name, flags = cpu_flags()
    kind = ("AVX-512" + (" (AVX512-BF16)" if "avx512_bf16" in flags else "") if "avx512f" in flags
            else "AVX2" if "avx2" in flags else "x86 without AVX2" if flags else platform.machine())
    return f"{os.cpu_count()}-core {kind}" + (f", {name}" if name else "")
