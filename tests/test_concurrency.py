"""Several processes on one folder: two sweeps at once, the experiment lock, a results file that holds a step twice,
a worker of a parallel sweep killed by SIGKILL, and a finished folder that is read-only (README "Reliability",
"Concurrency")."""
import multiprocessing
import os
import signal

# A worker process of sweep.run that parses a config holding `import test_concurrency` kills itself while
# KILL_ENV is set (test_a_killed_worker_is_named_and_the_others_run_again): as the out-of-memory killer does.
KILL_ENV = "RECALL_TEST_SIGKILL_WORKER"
if os.environ.get(KILL_ENV) and multiprocessing.parent_process() is not None:
    os.kill(os.getpid(), signal.SIGKILL)

import glob  # noqa: E402  (after the kill above: a killed worker imports nothing more)
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

import artifacts  # noqa: E402
import results  # noqa: E402
import sweep  # noqa: E402
from conftest import ROOT, TESTS, TINY_BINDINGS  # noqa: E402
from test_results import _block, _experiment  # noqa: E402

CONFIG_DIR = os.path.join(ROOT, "config")


def _main_command(base, *flags):
    """`python main.py` on the tiny prepared folder `base` (its TrainManager.base_folder_path: the experiments and the
    summary go to <base>/outputs)."""
    bindings = TINY_BINDINGS + [f'TrainManager.base_folder_path = "{base}"']
    return ([sys.executable, os.path.join(ROOT, "main.py"), "--config_dir", CONFIG_DIR, "--benchmark", "voc",
             "--jobs", "1"] + list(flags) + [f"--gin_param={b}" for b in bindings])


def test_two_sweeps_on_one_folder_run_each_experiment_once(copy_base):
    """The same sweep started twice at once on one folder: both exit 0, step 0 is trained once (one process waits
    for the experiment's lock, then reuses everything) and the results file holds each step once. The test holds
    the lock until both sweeps wait for it, so that they race for it whatever the machine's speed."""
    flags = ["--configs", "FINE_TUNING", "--test_type", "ADD_ONE_ONE_TIME"]
    params = TINY_BINDINGS + [f'TrainManager.base_folder_path = "{copy_base}"']
    experiment, = sweep.experiments([("FINE_TUNING", "ADD_ONE_ONE_TIME", "gan", ())], CONFIG_DIR, params=params)
    manager = experiment.manager()
    results_file = manager.get_validation_file_path()
    logs = [copy_base / f"sweep{k}.stderr" for k in (1, 2)]
    processes = []
    with artifacts.exclusive_lock(results_file[:-len(".txt")] + ".lock"):
        for log in logs:
            with open(log, "wb") as err:
                processes.append(subprocess.Popen(_main_command(copy_base, *flags), cwd=copy_base,
                                                  stdout=subprocess.DEVNULL, stderr=err))
        deadline = time.time() + 600
        while (time.time() < deadline and any(p.poll() is None for p in processes)
               and not all("another process holds its lock" in log.read_text(errors="replace") for log in logs)):
            time.sleep(0.2)
    for process in processes:
        process.wait(timeout=900)
    texts = [log.read_text(errors="replace") for log in logs]
    assert [p.returncode for p in processes] == [0, 0], "\n".join(t[-3000:] for t in texts)
    with open(results_file) as f:
        text = f.read()
    assert [text.count(f"RESULTS OF STEP {step}#") for step in (0, 1)] == [1, 1], text
    assert sum(t.count("step 0: trained and saved") for t in texts) == 1
    assert sum(t.count("step 1: trained classes") for t in texts) == 1
    assert all(t.count("another process holds its lock") == 1 for t in texts)
    assert [b["step"] for b in results.parse_results_file(results_file)] == [0, 1]


def test_a_results_file_never_holds_a_step_twice(tmp_path):
    """Appending a step the file holds is an error; a file that holds a step twice (two runs wrote it at once, before
    the experiment lock) is refused by name and step: the summary leaves it out with a warning, and results.py says
    so and exits 1."""
    path = _experiment(tmp_path, "FINE_TUNING", "ADD_ONE_ONE_TIME", None, "")
    step0, step1 = _block(0, [0.9] * 20 + [None]), _block(1, [0.8] * 21, list(range(20)), [20])
    results.append_results_block(path, step0)
    with pytest.raises(ValueError, match=re.escape(f"{path} already holds step 0")):
        results.append_results_block(path, step0)
    results.append_results_block(path, step1)
    assert [b["step"] for b in results.parse_results_file(path)] == [0, 1]
    with open(path, "a") as f:  # what two unlocked runs wrote
        f.write(step1)
    with pytest.raises(ValueError, match=re.escape(f"{path}: step 1 appears twice")):
        results.parse_results_file(path)
    refused = []
    assert results.read_experiments(str(tmp_path / "outputs"), refused=refused) == []
    assert refused == [(path, 1)]
    done = subprocess.run([sys.executable, os.path.join(ROOT, "results.py"), "--outputs", str(tmp_path / "outputs")],
                          cwd=TESTS, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and f"{path}: step 1 appears twice" in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


HOLD = """
import sys, time, artifacts
with artifacts.exclusive_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_the_experiment_lock_waits_for_a_live_holder_only(tmp_path):
    """Re-entrant in one process; another process waits while a holder lives and goes on once the kernel has freed
    the lock of the killed holder (no process-id guess); a lock file that cannot be made (read-only folder) is
    skipped with a warning."""
    lock = str(tmp_path / "outputs" / "run.lock")
    with artifacts.exclusive_lock(lock):
        with artifacts.exclusive_lock(lock):  # the same process: at once
            pass
    holder = subprocess.Popen([sys.executable, "-c", HOLD, lock], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        waited = []

        def on_wait(pid):
            waited.append(pid)
            holder.send_signal(signal.SIGKILL)

        start = time.time()
        with artifacts.exclusive_lock(lock, on_wait=on_wait):
            assert waited == [holder.pid] and time.time() - start < 60
    finally:
        holder.kill()
        holder.wait()
    real_open = os.open

    def read_only(path, flags, *args):
        if flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(os, "open", read_only)
        with artifacts.exclusive_lock(str(tmp_path / "run.lock")):  # missing and cannot be made: no lock
            pass
        with artifacts.exclusive_lock(lock):  # exists: locked through a read-only descriptor
            pass


def test_a_killed_worker_is_named_and_the_others_run_again(copy_base, tmp_path, monkeypatch):
    """A worker of a parallel sweep killed by SIGKILL (the out-of-memory killer's signal): its experiment fails with
    the signal named; the pool has ended its other processes, and their experiments and those never started run
    in a fresh pool."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    shutil.copy(os.path.join(CONFIG_DIR, "FINE_TUNING.gin"), config_dir)
    (config_dir / "KILLED.gin").write_text(f"import test_concurrency\ninclude '{config_dir / 'FINE_TUNING.gin'}'\n"
                                           f'TrainManager.test_name = "KILLED"\n')
    runs = [("FINE_TUNING", "ADD_ONE_ONE_TIME", "gan", ()), ("KILLED", "ADD_TEN_ONE_TIME", "gan", ()),
            ("FINE_TUNING", "ADD_FIVE_ONE_TIME", "gan", ())]
    monkeypatch.setenv(KILL_ENV, "1")
    records = sweep.experiments(runs, str(config_dir),
                                params=TINY_BINDINGS + [f'TrainManager.base_folder_path = "{copy_base}"'])
    failures = sweep.run(records, jobs=2)
    assert [f[:4] for f in failures] == [runs[1]], failures
    assert "SIGKILL" in failures[0][4] and "BrokenProcessPool" not in failures[0][4], failures
    finished = sorted(os.path.basename(p) for p in glob.glob(str(copy_base / "outputs" / "*.txt")))
    assert finished == ["FINE_TUNING (T0_P1.0.0.4_gan).txt", "FINE_TUNING (T1_P1.0.0.4_gan).txt"]
    for name in finished:
        assert [b["step"] for b in results.parse_results_file(str(copy_base / "outputs" / name))] == [0, 1]


def _without_write_access():
    """The command prefix that runs a process without write access to files whose mode forbids it: none for a
    normal user; for root, setpriv without the capabilities that bypass file modes (None: not possible here)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


def test_a_finished_read_only_folder_is_summarised(copy_base):
    """A finished folder that nobody may write: `python main.py` reuses every result, writes nothing, prints the
    tables and warns that the summary files were not written; exit status 0."""
    prefix = _without_write_access()
    if prefix is None:
        pytest.skip("running as root without setpriv: cannot take write access away")
    params = TINY_BINDINGS + [f'TrainManager.base_folder_path = "{copy_base}"']
    assert sweep.run(sweep.experiments([("FINE_TUNING", "ADD_ONE_ONE_TIME", "gan", ())], CONFIG_DIR,
                                       params=params)) == []
    outputs = copy_base / "outputs"
    before = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(copy_base / "**" / "*"), recursive=True)}
    subprocess.run(["chmod", "-R", "a-w", str(copy_base)], check=True)
    try:
        done = subprocess.run(prefix + _main_command(copy_base, "--configs", "FINE_TUNING", "--test_type",
                                                     "ADD_ONE_ONE_TIME"),
                              cwd=copy_base, capture_output=True, text=True, timeout=600)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(copy_base)], check=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "FAILED" not in done.stderr
    assert "| FINE_TUNING | ADD_ONE_ONE_TIME | 19-1 |" in done.stdout
    assert f"summary not written: {outputs} is not writable" in done.stderr, done.stderr[-3000:]
    after = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(copy_base / "**" / "*"), recursive=True)}
    assert after == before  # nothing written, nothing removed
    assert not (outputs / "summary.csv").exists()
