"""The sweep: which experiments run, in which order, in which process, and who writes what several of them need.

- plan(): the experiments of a sweep from the configs, setups, sources and RECALL variants (the original's order);
- experiments(): one record per experiment (Experiment), read from its gin files once: its files and bindings, the
  artifacts it shares with other experiments, its training steps. Everything below works on these records;
- shard(): the K-th of N shares of a sweep for one machine of a job array (share_groups: never split what two
  experiments share);
- run(): every experiment, serially or in worker processes that take them one at a time (_queue_order);
  artifact_writers() gives each shared artifact to the first experiment in plan order that needs it, and the
  others wait for it through the store handed to training.Training (SweepStore.ensure), so every results file is
  the serial sweep's;
- run_experiment(): one experiment under its lock (results.experiment_lock).

main.py turns the flags into a plan and calls these. TensorFlow (training, results) is imported where it is used,
so that planning a sweep from its gin files does not load it.
"""
import collections
import contextlib
import dataclasses
import functools
import io
import os
import signal
import tempfile
import time
import tokenize
import traceback
from concurrent import futures

import gin
from absl import logging

import artifacts
import datasets
import runtime
from train_manager import CONFIG_DIR, TrainManager

# The two RECALLs (README "Results"): as the original's code runs it (every switch of behaviours.SWITCHES at its
# default) and as the paper describes the method, its replay labelled on the inputs the network was trained on. A
# variant is a tuple of gin bindings parsed after the experiment's other files; its artifacts and results files
# carry the switches in their names (behaviours.tag), so the two never share what a switch changes.
RECALL_VARIANTS = {"original": (), "paper": ('Training.replay_label_input = "mean_subtracted"',)}
WAIT_POLL_SECONDS = 0.2  # how often a waiting experiment looks for an artifact or a mark another one leaves

# ---------------------------------------------------------------------------------------------------- the plan


def plan(configs, test_types, sources, config_dir="config", method_test_types=None, variants=("original",),
         dataset=None):
    """The experiments of a sweep, in the original's order: JOINT, then each config with replay x source x
    setup, then the configs without replay (the fine-tuning baselines, then the field's: run once, under the
    first source's names). Whether a config replays is TrainManager.uses_replay's answer for it. The RECALL
    experiments (a config with replay and TrainManager.method "recall") run once per variant: the first
    variant's in that order, then the next variant's, and so on.

    Args:
      method_test_types: the setups of the configs whose TrainManager.method is not "recall" (the field's
        baselines); None: test_types.
      variants: names of RECALL_VARIANTS.
      dataset: the dataset whose setups the test types name (datasets.DATASETS); None: VOC, TrainManager.TESTS.

    Returns a list of (config, test_type, replay_source, variant bindings): the bindings are a tuple of gin
    bindings, () for the original's behaviours."""
    unknown = [c for c in configs if not os.path.exists(os.path.join(config_dir, c + ".gin"))]
    if unknown:
        raise ValueError(f"--configs: unknown config(s) {unknown}; expected names of {config_dir}/*.gin")
    names = [t for t, _ in TrainManager.setups(dataset or datasets.DEFAULT)]
    bad = [t for t in list(test_types) + list(method_test_types or []) if t not in names]
    if bad:
        raise ValueError(f"--test_type: unknown {bad}; expected some of {names}")
    bad = [v for v in variants if v not in RECALL_VARIANTS]
    if bad or not variants:
        raise ValueError(f"--recall_variants: {bad or 'none given'}; expected some of {list(RECALL_VARIANTS)}")
    bad = [s for s in sources if s not in ("gan", "flickr")]
    if bad or not sources:
        raise ValueError(f"--replay_source: {bad or 'none given'}; expected gan and/or flickr")
    runs = [("JOINT", "JOINT", None, ())] if "JOINT" in configs else []
    incremental = [c for c in configs if c != "JOINT"]
    facts = {c: _incremental_facts(os.path.join(config_dir, c + ".gin")) for c in incremental}
    replays = {c: replay for c, (replay, _) in facts.items()}
    setups = {c: test_types if method == "recall" or method_test_types is None else method_test_types
              for c, (_, method) in facts.items()}
    methods = {c: method for c, (_, method) in facts.items()}
    for variant in variants:
        runs += [(c, t, source, RECALL_VARIANTS[variant]) for source in sources for c in incremental
                 if replays[c] and (methods[c] == "recall" or variant == variants[0]) for t in setups[c]
                 if t != "JOINT"]
    runs += [(c, t, sources[0], ()) for c in incremental if not replays[c] for t in setups[c] if t != "JOINT"]
    return runs


def _incremental_facts(config_file):
    """(TrainManager.uses_replay, TrainManager.method) of a config's incremental experiments (read without
    TensorFlow: only the config's TrainManager bindings matter). Once per config: it decides which experiments
    the plan holds."""
    gin.clear_config()
    try:
        gin.parse_config_file(config_file, skip_unknown=True)
        dataset = gin.get_bindings("TrainManager").get("dataset", datasets.DEFAULT)
        first_setup = TrainManager.setups(dataset)[0][0] if dataset in datasets.DATASETS else "ADD_ONE_ONE_TIME"
        m = TrainManager(test_type=first_setup, replay_source="gan")
        return m.uses_replay(), m.incremental.method
    except (ValueError, SyntaxError, tokenize.TokenError) as e:  # a bad binding or value; gin's parse errors
        raise ValueError(f"--configs: {gin_file_error(config_file) or f'{config_file}: {e}'}") from None
    finally:
        gin.clear_config()


def gin_file_error(path):
    """None when the gin file `path`, and the files it includes, are gin syntax (names and values are checked with
    each experiment's bindings), else a message naming the file and the line. An unclosed bracket is named at the
    line where it opens (gin and Python's tokenizer name the line where the next statement or the file ends)."""
    return _gin_file_error(path, set())


def _gin_file_error(path, seen):
    if os.path.abspath(path) in seen:
        return None
    seen.add(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        text = f.read()
    included = []
    try:
        for statement in gin.config_parser.ConfigParser(text, gin.config.ParserDelegate(skip_unknown=True)):
            if isinstance(statement, gin.config_parser.IncludeStatement):
                included.append(statement.filename)
    except (SyntaxError, tokenize.TokenError, ValueError) as e:
        bracket = unclosed_bracket(text)
        line = e.args[1][0] if isinstance(e, tokenize.TokenError) else getattr(e, "lineno", None)
        if bracket is not None and (line is None or line >= bracket.start[0]):
            return f"{path}: line {bracket.start[0]}: {bracket.string!r} is never closed"
        message = e.args[0] if isinstance(e, tokenize.TokenError) else getattr(e, "msg", None) or str(e)
        return f"{path}: line {line}: {message}" if line else f"{path}: {message}"
    for name in included:  # as gin finds them: as given, beside the including file, in the project's config/
        for candidate in (name, os.path.join(os.path.dirname(path), name), os.path.join(CONFIG_DIR, name)):
            if os.path.isfile(candidate):
                error = _gin_file_error(candidate, seen)
                if error:
                    return error
                break
    return None


def unclosed_bracket(text):
    """The token (tokenize.TokenInfo) of the first bracket of `text` that is never closed, or None."""
    opened = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.OP and token.string in "([{":
                opened.append(token)
            elif token.type == tokenize.OP and token.string in ")]}" and opened:
                opened.pop()
    except (tokenize.TokenError, SyntaxError):  # the text ends inside a bracket; what only Python rejects
        pass
    return opened[0] if opened else None


def experiment_gin_files(config, config_dir, extra_files=(), overrides_dir=None):
    """The gin files of one experiment: its config, then extra_files, with the per-config override
    (`<overrides_dir>/<config>.gin`, when it exists) right after the first of extra_files."""
    files = list(extra_files)
    override = os.path.join(overrides_dir, config + ".gin") if overrides_dir else None
    if override and os.path.exists(override):
        files.insert(1, override)
    return [os.path.join(config_dir, config + ".gin")] + files


def register_bindings():
    """Imports the modules whose gin bindings the configs may use (Training.*, backbone.*, embedded.*), in
    this process (a worker of a parallel sweep starts without them). They import TensorFlow."""
    import embedded_benchmark  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import training  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One experiment of a sweep, as the sweep needs it: read from its gin files once (experiments()), then
    handed around (to shares, the queue, the worker processes) without parsing gin again.

    Attributes:
      config, test_type, replay_source, variant: what plan() gives (variant: a tuple of gin bindings).
      files: its gin files (experiment_gin_files); params: the bindings parsed after them (the sweep's, then
        the variant's).
      shared: the artifacts it writes under names other experiments may need too (_shared_names), step-0
        encoder first; for an experiment whose gin files do not parse, (its run,) (it shares nothing and fails
        when it runs).
      first_step_steps, training_steps: its step 0's training steps, and those of its helpers and incremental
        steps (shard() balances shares by them).
      error: why its gin files or bound values are refused (None: they are not).
    """
    config: str
    test_type: str
    replay_source: str | None
    variant: tuple = ()
    files: tuple = ()
    params: tuple = ()
    shared: tuple = ()
    first_step_steps: int = 0
    training_steps: int = 0
    error: str | None = None

    @property
    def run(self):
        """(config, test_type, replay_source, variant): the experiment as plan() names it."""
        return (self.config, self.test_type, self.replay_source, self.variant)

    def manager(self):
        """Parses the experiment's gin files and bindings afresh (gin's global config: what its Training will
        read) and returns its TrainManager."""
        register_bindings()
        gin.clear_config()
        gin.parse_config_files_and_bindings(list(self.files), list(self.params))
        return TrainManager(test_type=self.test_type, replay_source=self.replay_source)


def experiments(runs, config_dir, extra_files=(), params=(), overrides_dir=None, check=None):
    """The Experiment of each run of plan(), each read from its gin files once.

    Args:
      runs: (config, test_type, replay_source, variant bindings) tuples, as plan() gives them.
      extra_files, params: gin files and bindings parsed after each experiment's config.
      overrides_dir: a folder of per-config gin files (`<config>.gin`); an experiment's one, when it exists,
        is parsed right after the first of extra_files (the embedded benchmark: config/embedded/JOINT.gin).
      check: called with no argument while an experiment's config is parsed (main.check_bound_values); a
        ValueError it raises becomes the experiment's error.

    Returns a list of Experiment, in the order of `runs`. One whose gin files do not parse, or that `check`
    refuses, has its `error` set (the caller decides whether that stops the sweep)."""
    records = []
    for config, test_type, source, variant in runs:
        record = Experiment(config, test_type, source, tuple(variant),
                            tuple(experiment_gin_files(config, config_dir, extra_files, overrides_dir)),
                            tuple(params) + tuple(variant))
        try:
            m = record.manager()
            if check is not None:
                check()
            records.append(dataclasses.replace(record, shared=tuple(_shared_names(m)),
                                               first_step_steps=m.first_step_schedule().steps,
                                               training_steps=_training_steps(m)))
        except Exception as e:  # pylint: disable=broad-except  (gin raises several kinds; it fails when it runs)
            records.append(dataclasses.replace(record, shared=(record.run,), error=str(e)))
    gin.clear_config()
    return records


def _shared_names(m):
    """The artifacts an experiment writes under names other experiments may use too: the step-0 checkpoints
    (named by the encoder's; same protocol, first classes and parameter indices), with replay its helper decoders
    and labelled replay, and its mixed-label files (with the original's names, shared by every setup and source
    of one protocol and parameter indices; see TrainManager.mixed_labels_per_experiment). Every other name holds
    the experiment's own."""
    names = [m.get_encoder_path()]
    if m.uses_replay():
        names += m.get_helper_out_paths() + m.get_replay_output_paths()
    if m.mix_labels():
        names += m.get_mixed_train_paths()[1:]
    return list(dict.fromkeys(names))


def _training_steps(m):
    """The training steps one experiment adds to its group: its helpers and incremental steps (the first
    step is counted once per group, see shard)."""
    steps = sum(m.incremental_schedule(len(m.get_new_classes_for_incremental_step(s))).steps
                for s in range(1, len(m.test_structure)))
    if m.uses_replay():
        steps += sum(m.helper_schedule(len(c)).steps for c in m.get_helpers_classes())
    return steps

# ------------------------------------------------------------------------------------ who writes what, shares


def share_groups(records):
    """The Experiments `records` split into groups that share no artifact (Experiment.shared), for machines that
    do not wait for each other (--shard). Biggest group first, each in plan order, so that a group computes what
    a serial sweep computes."""
    parent = {}

    def root(key):
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    for e in records:
        for key in e.shared[1:]:
            parent[root(key)] = root(e.shared[0])
    groups = {}
    for e in records:
        groups.setdefault(root(e.shared[0]), []).append(e)
    return sorted(groups.values(), key=len, reverse=True)


def artifact_writers(records):
    """{artifact path: number (1-based, plan order) of the first of `records` that needs it} for the artifacts two
    or more experiments need (Experiment.shared): the experiment that writes it in a serial sweep, so in a
    parallel one (see run) the others wait for it (SweepStore.ensure)."""
    writers, needed = {}, collections.Counter()
    for number, e in enumerate(records, 1):
        for name in e.shared:
            if isinstance(name, str):
                writers.setdefault(name, number)
                needed[name] += 1
    return {name: number for name, number in writers.items() if needed[name] > 1}


def _owners(numbered, writers):
    """{number: set of the numbers of the other experiments that write an artifact it needs (artifact_writers)}."""
    return {number: {writers[n] for n in e.shared if isinstance(n, str) and writers.get(n, number) != number}
            for number, e in numbered}


def _queue_order(numbered, writers):
    """The order in which the processes of a parallel sweep take the numbered Experiments: by level, then plan
    order. Level 0: the experiments that wait for no other (JOINT, the first experiment of most first steps);
    level k + 1: those that wait for one of level k at most. Every experiment comes after those whose artifacts it
    waits for, so one of the running experiments never waits; and independent first steps start side by side."""
    level, owners = {}, _owners(numbered, writers)
    for number, _ in numbered:
        level[number] = 1 + max((level[o] for o in owners[number]), default=-1)
    return sorted(numbered, key=lambda item: (level[item[0]], item[0]))


def parse_shard(text):
    """(K, N) from "K/N", or None when it is not that with 1 <= K <= N."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        return None
    k, n = (int(p) for p in parts)
    return (k, n) if 1 <= k <= n else None


def shard(records, share):
    """The Experiments of share K of N (share = (K, N)), in plan order: the groups of share_groups (never split,
    so that no two machines write one artifact) dealt out largest first to the share with the fewest training
    steps so far (a group weighs its first step once plus each experiment's helpers and incremental steps).
    Deterministic: every machine computes the same shares."""
    k, n = share
    groups = share_groups(records)
    weights = [group[0].first_step_steps + sum(e.training_steps for e in group) for group in groups]
    loads, mine = [0] * n, set()
    for index in sorted(range(len(groups)), key=lambda i: (-weights[i], i)):
        j = min(range(n), key=lambda i: (loads[i], i))
        loads[j] += weights[index]
        if j == k - 1:
            mine.update(groups[index])
    return [e for e in records if e in mine]

# ------------------------------------------------------------------------------------------------ running


class SweepStore:
    """The store (training.Training's `store`) of one experiment of a parallel sweep: ensure(path, build) first
    waits while the earlier experiment of the sweep that writes the artifact (artifact_writers: the first in plan
    order that needs it, as in a serial sweep) has not written it, then builds it only when it is still missing
    (that experiment ended without it)."""

    def __init__(self, writers, number, finished_dir, context):
        """writers: artifact_writers' map; number: this experiment's; finished_dir: the folder where each finished
        experiment leaves a file named by its number; context: the context.Context that counts the waits."""
        self.writers, self.number, self.finished_dir, self.context = writers, number, finished_dir, context

    def ensure(self, path, build, exists=os.path.exists):
        """Makes the artifact at `path` with build() unless exists(path), after waiting for its writer (see the
        class). Returns True when build() ran, False when the artifact was there."""
        owner = self.writers.get(path)
        if owner is not None and owner != self.number and not exists(path):
            logging.info("waiting for %s (experiment %d of the sweep writes it)", path, owner)
            start = time.perf_counter()
            while not exists(path) and not os.path.exists(os.path.join(self.finished_dir, str(owner))):
                time.sleep(WAIT_POLL_SECONDS)
            self.context.add_wait(time.perf_counter() - start)
        if exists(path):
            return False
        build()
        return True


def run(records, jobs=1, context=None):
    """Runs every Experiment of `records`; one that fails is logged and the others go on.

    Args:
      jobs: with more than 1, up to `jobs` processes take the experiments one at a time (each with TensorFlow's
        default threads), in _queue_order. An artifact that several experiments need (artifact_writers) is
        written by the first of them in plan order, as in a serial sweep; the others wait for it. So every
        results file is the serial sweep's, and since an experiment is only taken after those it waits for,
        one of the running ones never waits.
      context: the context.Context that collects the experiments' times (those of the processes are added
        to it); None: the process's default one.

    A process of the pool that dies (e.g. SIGKILL from the out-of-memory killer) fails its experiment, named with
    the signal; the experiments that had not started, and those the pool then stopped, run in a fresh pool
    (_pool_round).

    Returns the list of failures as (config, test_type, replay_source, variant, error text)."""
    from context import default_context  # pylint: disable=import-outside-toplevel  (see the module's docstring)
    context = context or default_context()
    numbered = list(enumerate(records, 1))
    if jobs <= 1:
        return _run_numbered(numbered, len(records), context)
    writers = artifact_writers(records)
    queue, owners = _queue_order(numbered, writers), _owners(numbered, writers)
    failures = []
    with tempfile.TemporaryDirectory(prefix="recall-sweep-") as finished, \
            tempfile.TemporaryDirectory(prefix="recall-sweep-marks-") as marks:
        while queue:
            round_failures, queue = _pool_round(queue, jobs, len(records), writers, finished, owners, marks, context)
            failures += round_failures
    runs = [e.run for e in records]
    return sorted(failures, key=lambda f: runs.index(f[:4]))


def _pool_round(queue, jobs, total, writers, finished, owners, marks, context):
    """Runs the experiments of `queue` (numbered Experiments, in queue order) in a fresh pool of up to `jobs`
    processes (_sweep_process).

    A process of the pool that dies breaks the pool (concurrent.futures): it stops its other processes (SIGTERM)
    and fails every experiment not done with BrokenProcessPool. Here the experiment that ran in the dead process
    fails, named with the process's exit signal or status (it would likely die again: the out-of-memory killer's
    SIGKILL); those that ran in the processes the pool stopped, and those not started yet, are given back to run
    again in a fresh pool (they resume from their artifacts).

    Returns (failures, the part of `queue` to run again)."""
    failures, broken, answered = [], [], 0
    with runtime.worker_pool(min(jobs, len(queue))) as pool:
        done = [pool.submit(_sweep_process, number, e, total, writers, finished, sorted(owners[number]), marks)
                for number, e in queue]
        for (number, e), future in zip(queue, done):
            try:
                run_failures, times = future.result()
            except futures.process.BrokenProcessPool:
                broken.append((number, e))
                continue
            except Exception as error:  # pylint: disable=broad-except  (its result did not come back)
                logging.error("experiment %d %s: its process gave no result: %r", number, e.run, error)
                run_failures, times = [e.run + (f"{type(error).__name__}: {error}",)], {}
            answered += 1
            failures += run_failures
            context.times.update(times)
        # pid -> multiprocessing.Process of the pool (no public view of them; the exit codes are read after the
        # block, which waits until the pool has ended them all)
        processes = dict(getattr(pool, "_processes", None) or {})
    again, died = [], []
    for number, e in broken:
        pid = _started_by(marks, number)
        code = processes[pid].exitcode if pid in processes else None
        if pid is None or code == -signal.SIGTERM or os.path.exists(os.path.join(finished, str(number))):
            again.append((number, e))  # not started; stopped by the pool; or done with its answer lost
            continue
        reason = f"its process {pid} died: {_exit_text(code)}"
        logging.error("experiment %d/%d %s: %s; not run again", number, total, e.run, reason)
        died.append(e.run + (reason,))
        artifacts.write_text(os.path.join(finished, str(number)), "")  # the experiments waiting for it go on
    if again and not died and not answered:  # nothing moved: a fresh pool might break the same way for ever
        codes = sorted({p.exitcode for p in processes.values()}, key=str)
        return failures + [e.run + (f"the process pool broke (its processes' exit codes: {codes})",)
                           for _, e in again], []
    for number, _ in again:
        for mark in ("started", "taken"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(marks, f"{number}.{mark}"))
    if again:
        logging.warning("a process of the sweep died and the pool stopped the others: experiments %s run again in "
                        "a fresh pool", [number for number, _ in again])
    return failures + died, again


def _started_by(marks, number):
    """The process id that started experiment `number` of a parallel sweep (its mark), or None."""
    try:
        with open(os.path.join(marks, f"{number}.started"), encoding="ascii") as f:
            return int(f.read())
    except (FileNotFoundError, ValueError):
        return None


def _exit_text(code):
    """How a process ended, from its exit code (multiprocessing's: -N for signal N)."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        note = " (what the out-of-memory killer sends)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{note}, exit code {code}"
    return f"exit status {code}"


_PROCESS_CONTEXT = []  # the context.Context of a sweep's worker process, made by its first experiment


def _sweep_process(number, record, total, writers, finished, owners=(), marks=None):
    """Experiment `number` (an Experiment) of a parallel sweep, in a worker process, without progress bars (the
    bars of parallel processes would overwrite each other). Its store (SweepStore) waits for the artifacts
    `writers` gives to earlier experiments; it leaves the file `finished`/<number> when it ends. Returns (failures,
    times of this experiment).

    With `marks` (a folder), it leaves `<number>.started` (its process id) there when it starts and
    `<number>.taken` once it holds the experiment's lock, and it takes that lock only after every experiment of
    `owners` (those that write an artifact it needs) has taken its own or ended (_wait_for_owners)."""
    from context import Context  # pylint: disable=import-outside-toplevel  (see the module's docstring)
    if not _PROCESS_CONTEXT:
        logging.use_absl_handler()  # the log format of the main process (app.run installs it there)
        logging.set_verbosity(logging.INFO)
        _PROCESS_CONTEXT.append(Context(progress_bars=False))
    context = _PROCESS_CONTEXT[0]
    store = SweepStore(writers, number, finished, context)
    before, start = collections.Counter(context.times), time.time()
    locked = {}
    if marks is not None:
        artifacts.write_text(os.path.join(marks, f"{number}.started"), str(os.getpid()))
        locked["on_locked"] = lambda k: artifacts.write_text(os.path.join(marks, f"{k}.taken"), "")
    try:
        if marks is not None:
            _wait_for_owners(number, owners, finished, marks, context)
        failures = _run_numbered([(number, record)], total, context, store=store, **locked)
    finally:
        artifacts.write_text(os.path.join(finished, str(number)), "")
    logging.info("experiment %d/%d done in %.1f s (process %d)", number, total, time.time() - start, os.getpid())
    return failures, dict(context.times - before)


def _wait_for_owners(number, owners, finished, marks, context):
    """Before experiment `number` of a parallel sweep takes its lock, waits until each experiment of `owners` (those
    that write an artifact it needs; earlier in the queue, so started before it) holds its own lock
    (`marks`/<owner>.taken) or has ended (`finished`/<owner>). So a process that holds an experiment's lock and waits
    for an artifact (SweepStore.ensure) only ever waits for an experiment of its own sweep that runs under its lock,
    earlier in plan order; never for one that waits for the lock of an experiment another sweep on the same folder
    runs. Two sweeps on one folder then cannot wait for each other in a circle, whatever the orders of their plans
    (README "Concurrency")."""

    def pending():
        return [o for o in owners if not (os.path.exists(os.path.join(marks, f"{o}.taken"))
                                          or os.path.exists(os.path.join(finished, str(o))))]

    waiting = pending()
    if not waiting:
        return
    logging.info("experiment %d: waiting for experiment(s) %s, which write what it needs, to start", number, waiting)
    start = time.perf_counter()
    while pending():
        time.sleep(WAIT_POLL_SECONDS)
    context.add_wait(time.perf_counter() - start)


def _run_numbered(numbered, total, context, store=None, on_locked=None):
    """Runs the numbered Experiments one after the other (run_experiment); `on_locked(number)` is called once an
    experiment holds its lock. Returns the failures."""
    failures = []
    for k, e in numbered:
        logging.info("experiment %d/%d: %s %s %s%s", k, total, e.config, e.test_type, e.replay_source,
                     "".join(f" [{v}]" for v in e.variant))
        try:
            run_experiment(e, context, store=store,
                           on_locked=None if on_locked is None else functools.partial(on_locked, k))
        except Exception as error:  # pylint: disable=broad-except
            logging.error("experiment %s %s %s %s failed: %s\n%s", e.config, e.test_type, e.replay_source, e.variant,
                          error, traceback.format_exc())
            failures.append(e.run + (f"{type(error).__name__}: {error}",))
    return failures


def run_experiment(record, context=None, store=None, on_locked=None):
    """Parses the Experiment's gin files and bindings afresh and runs it (Training(manager).train()) under the
    experiment's lock (results.experiment_lock, beside its results file): another process that runs the same
    experiment on the same folder (a second sweep) waits until this one has finished it, then finds every stage
    complete and reuses it. `store`: Training's (None: a process alone). `on_locked()` is called once the lock is
    held. A non-chief worker of a multi-worker run takes no lock: it writes into a scratch folder of its own, and
    its chief holds the lock. Returns the experiment's TrainManager."""
    try:
        manager = record.manager()
    except ValueError as e:
        raise ValueError(f"gin files {list(record.files)}: {e}") from None
    import results  # pylint: disable=import-outside-toplevel  (see the module's docstring)
    import training  # pylint: disable=import-outside-toplevel
    trainer = training.Training(manager, context=context, store=store)
    if not trainer.chief:
        trainer.train()
        return manager
    start, waited = time.perf_counter(), []

    def waiting(pid):
        waited.append(pid)
        logging.info("experiment %s: another process holds its lock %s%s: waiting until it has run the experiment",
                     manager.get_validation_file_name(), results.lock_path(trainer.results_file),
                     f" (process {pid})" if pid else "")

    with results.experiment_lock(trainer.results_file, on_wait=waiting):
        if waited:
            seconds = time.perf_counter() - start
            trainer.context.add_wait(seconds)
            logging.info("experiment %s: lock taken after %.1f s", manager.get_validation_file_name(), seconds)
        if on_locked is not None:
            on_locked()
        trainer.train()
    return manager
