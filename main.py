"""Runs the RECALL benchmark sweep and writes its summary.

  python main.py                                   # every benchmark (see README)
  python main.py --configs DISJOINT --test_type ADD_FIVE_ONE_TIME --replay_source gan
  python main.py --gin_file my.gin --gin_param 'TrainManager.batch_size = 8'

With prepared Pascal VOC data under ./data (see prepare_data.py) it runs the paper's configs (config/*.gin) and
the field's baselines (LwF, ILT, MiB, PLOP: config/{LWF,ILT,ILT_FROZEN,MIB,PLOP}_{DISJOINT,OVERLAPPED}.gin; on
the multi-step setups unless --test_type is given).
Without it, it builds the embedded VOC-like benchmark under ./embedded once (world, data, replay) and runs
the same sweep there with config/embedded/embedded.gin on top of each config: a small network, small
images and few steps, so the whole method runs on a laptop CPU: 114 experiments (both RECALLs, fine-tuning,
JOINT and the field's baselines on 15-1), build included, in 30.5 minutes on a 2-core AVX-512 CPU (2026-12-07;
README "Results"). It logs its own time and CPU kind at the end.
"""
import collections
import contextlib
import functools
import io
import os
import signal
import sys
import tempfile
import time
import tokenize
import traceback
from concurrent import futures

import runtime  # first: oneDNN kernels before TensorFlow loads; worker processes
import gin
from absl import app, flags, logging

import artifacts
import paths
from train_manager import TrainManager

# TensorFlow and the modules that import it (training, results, embedded_benchmark) are imported where they
# are used, after the flags' checks (checked_plan): a typo in a flag fails in a second, not after TensorFlow
# has loaded.

TEST_TYPES = [name for name, _ in TrainManager.TESTS if name != "JOINT"]
RECALL_CONFIGS = ["OVERLAPPED", "DISJOINT", "SEQUENTIAL"]
BASELINE_CONFIGS = ["FINE_TUNING", "FINE_TUNING_DISJOINT", "FINE_TUNING_OVERLAPPED"]
# The field's baselines (TrainManager.method other than "recall"; README "Baselines") on the protocols their papers
# report. Unless --test_type is given, they run on METHOD_TEST_TYPES only: 15-1, the multi-step setup every
# baseline's paper reports in both protocols. Each baseline experiment costs about twice a fine-tuning one (the
# previous network runs beside the trained one, most train the encoder, and each step traces its own loss), so
# even this one setup takes the embedded sweep past its 20 minutes, and 10-1 would add twice as much again
# (benchmarks/BENCHMARKS.md "Baselines"); run the other setups with --configs and --test_type. ILT_FROZEN_*, ILT
# with the step-0 encoder frozen, is left out: its feature distillation is then 0 and its loss is LwF's, so it
# repeats LwF's results to the digit.
METHOD_CONFIGS = [f"{method}_{protocol}" for method in ("LWF", "ILT", "MIB", "PLOP")
                  for protocol in ("DISJOINT", "OVERLAPPED")]
METHOD_TEST_TYPES = ["ADD_ONE_FIVE_TIMES"]
DEFAULT_CONFIGS = ["JOINT"] + RECALL_CONFIGS + BASELINE_CONFIGS + METHOD_CONFIGS
# The two RECALLs (README "Results"): as the original's code runs it (every switch of behaviours.SWITCHES at its
# default) and as the paper describes the method, its replay labelled on the inputs the network was trained on. A
# variant is a tuple of gin bindings parsed after the experiment's other files; its artifacts and results files
# carry the switches in their names (behaviours.tag), so the two never share what a switch changes. The embedded
# sweep runs both; a real VOC sweep runs the original unless --recall_variants says otherwise.
RECALL_VARIANTS = {"original": (), "paper": ('Training.replay_label_input = "mean_subtracted"',)}
DEFAULT_VARIANTS = {"embedded": ["original", "paper"], "voc": ["original"]}

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "extra gin files, parsed after each experiment's config")
flags.DEFINE_multi_string("gin_param", [], "extra gin bindings, e.g. 'TrainManager.batch_size = 8'")
flags.DEFINE_list("configs", DEFAULT_CONFIGS, "configs (names of config/*.gin) to run")
flags.DEFINE_list("test_type", TEST_TYPES, "incremental setups (TrainManager.TESTS names); when not given, the "
                  "field's baselines (METHOD_CONFIGS) run on the multi-step setups only (METHOD_TEST_TYPES)")
flags.DEFINE_list("replay_source", ["gan", "flickr"], "replay sources of the RECALL configs")
flags.DEFINE_list("recall_variants", None, f"RECALL's variants to run (RECALL_VARIANTS: {list(RECALL_VARIANTS)}): "
                  "the original's code and the paper's method (replay labelled on mean-subtracted inputs); "
                  "default: both on the embedded benchmark, original on real VOC")
flags.DEFINE_enum("benchmark", "auto", ["auto", "voc", "embedded"],
                  "voc: prepared data under ./data; embedded: the generated benchmark under ./embedded; "
                  "auto: voc when ./data/validation/val_1.tfrecord exists, else embedded")
flags.DEFINE_string("config_dir", os.path.join(os.path.dirname(os.path.abspath(__file__)), "config"),
                    "folder of the configs (default: the project's config/)")
flags.DEFINE_string("shard", None, "K/N: run only the K-th of N shares of the sweep (1 <= K <= N), for a job array "
                    "over a shared folder: whole groups of share_groups, balanced by their training steps; run "
                    "results.py at the end for the summary of all shares")
flags.DEFINE_integer("jobs", None, "processes that run the experiments, one group sharing a first step at a "
                     "time each (see sweep); above 1, the embedded build pretrains its encoder in a second "
                     "process; default: 2 for the embedded benchmark on a machine with 2 or more cores and no "
                     "GPU or TF_CONFIG, else 1", lower_bound=1)


def plan(configs, test_types, sources, config_dir="config", method_test_types=None, variants=("original",)):
    """The experiments of a sweep, in the original's order: JOINT, then each config with replay x source x
    setup, then the configs without replay (the fine-tuning baselines, then the field's: run once, under the
    first source's names). Whether a config replays is TrainManager.uses_replay's answer for it. The RECALL
    experiments (a config with replay and TrainManager.method "recall") run once per variant: the first
    variant's in that order, then the next variant's, and so on.

    Args:
      method_test_types: the setups of the configs whose TrainManager.method is not "recall" (the field's
        baselines); None: test_types.
      variants: names of RECALL_VARIANTS.

    Returns a list of (config, test_type, replay_source, variant bindings): the bindings are a tuple of gin
    bindings, () for the original's behaviours."""
    unknown = [c for c in configs if not os.path.exists(os.path.join(config_dir, c + ".gin"))]
    if unknown:
        raise ValueError(f"--configs: unknown config(s) {unknown}; expected names of {config_dir}/*.gin")
    names = [t for t, _ in TrainManager.TESTS]
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
    TensorFlow: only the config's TrainManager bindings matter)."""
    gin.clear_config()
    try:
        gin.parse_config_file(config_file, skip_unknown=True)
        m = TrainManager(test_type="ADD_ONE_ONE_TIME", replay_source="gan")
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
        bracket = _unclosed_bracket(text)
        line = e.args[1][0] if isinstance(e, tokenize.TokenError) else getattr(e, "lineno", None)
        if bracket is not None and (line is None or line >= bracket.start[0]):
            return f"{path}: line {bracket.start[0]}: {bracket.string!r} is never closed"
        message = e.args[0] if isinstance(e, tokenize.TokenError) else getattr(e, "msg", None) or str(e)
        return f"{path}: line {line}: {message}" if line else f"{path}: {message}"
    for name in included:  # as gin finds them: as given, else beside the including file
        for candidate in (name, os.path.join(os.path.dirname(path), name)):
            if os.path.isfile(candidate):
                error = _gin_file_error(candidate, seen)
                if error:
                    return error
                break
    return None


def _unclosed_bracket(text):
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


def check_bound_values():
    """Checks the values bound, in the gin config parsed now, to what checks them only when an experiment runs:
    Training's switches (training.Training's constructor) and the backbone's size (model.build_encoder), so that a
    bad value stops the sweep before any work. The same checks and messages, without building anything.

    Raises ValueError naming the binding, its value and what is expected."""
    import model  # pylint: disable=import-outside-toplevel  (see the imports)
    import training  # pylint: disable=import-outside-toplevel
    training.check_values(**gin.get_bindings("Training", resolve_references=False))
    backbone = gin.get_bindings("backbone", resolve_references=False)
    model.check_backbone(backbone.get("units", (3, 4, 23, 3)), backbone.get("width", 1.0))


def experiment_gin_files(config, config_dir, extra_files=(), overrides_dir=None):
    """The gin files of one experiment: its config, then extra_files, with the per-config override
    (`<overrides_dir>/<config>.gin`, when it exists) right after the first of extra_files."""
    files = list(extra_files)
    override = os.path.join(overrides_dir, config + ".gin") if overrides_dir else None
    if override and os.path.exists(override):
        files.insert(1, override)
    return [os.path.join(config_dir, config + ".gin")] + files


def _register_bindings():
    """Imports the modules whose gin bindings the configs may use (Training.*, backbone.*, embedded.*), in
    this process (a worker of a parallel sweep starts without them). They import TensorFlow."""
    import embedded_benchmark  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import training  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import


def _manager(files, params, test_type, replay_source):
    _register_bindings()
    gin.clear_config()
    gin.parse_config_files_and_bindings(files, list(params))
    return TrainManager(test_type=test_type, replay_source=replay_source)


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


def _runs_shared_names(runs, config_dir, extra_files, params, overrides_dir):
    """[_shared_names of each run]; a run whose gin files do not parse gets its own key (it fails alone)."""
    names = []
    for run in runs:
        config, test_type, source, variant = run
        try:
            names.append(_shared_names(_manager(experiment_gin_files(config, config_dir, extra_files, overrides_dir),
                                                list(params) + list(variant), test_type, source)))
        except Exception:  # pylint: disable=broad-except  (it fails and is logged when it runs)
            names.append([run])
    gin.clear_config()
    return names


def share_groups(runs, config_dir, extra_files=(), params=(), overrides_dir=None):
    """`runs` split into groups that share no artifact (_shared_names), for machines that do not wait for each
    other (--shard). Biggest group first, each in plan order, so that a group computes what a serial sweep
    computes."""
    parent = {}

    def root(key):
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    shared = _runs_shared_names(runs, config_dir, extra_files, params, overrides_dir)
    for names in shared:
        for key in names[1:]:
            parent[root(key)] = root(names[0])
    groups = {}
    for run, names in zip(runs, shared):
        groups.setdefault(root(names[0]), []).append(run)
    return sorted(groups.values(), key=len, reverse=True)


def artifact_writers(runs, config_dir, extra_files=(), params=(), overrides_dir=None):
    """{artifact path: number (1-based, plan order) of the first of `runs` that needs it} for the artifacts two
    or more runs need (_shared_names): the experiment that writes it in a serial sweep, so in a parallel one
    (see sweep) the others wait for it (training.Context.wait_for)."""
    return _writers(_runs_shared_names(runs, config_dir, extra_files, params, overrides_dir))


def _writers(shared):
    writers, needed = {}, collections.Counter()
    for number, names in enumerate(shared, 1):
        for name in names:
            if isinstance(name, str):
                writers.setdefault(name, number)
                needed[name] += 1
    return {name: number for name, number in writers.items() if needed[name] > 1}


def _owners(numbered, shared, writers):
    """{number: set of the numbers of the other experiments that write an artifact it needs (artifact_writers)}."""
    return {number: {writers[n] for n in names if isinstance(n, str) and writers.get(n, number) != number}
            for (number, _), names in zip(numbered, shared)}


def _queue_order(numbered, shared, writers):
    """The order in which the processes of a parallel sweep take the experiments: by level, then plan order.
    Level 0: the experiments that wait for no other (JOINT, the first experiment of most first steps); level
    k + 1: those that wait for one of level k at most. Every experiment comes after those whose artifacts it
    waits for, so one of the running experiments never waits; and independent first steps start side by side."""
    level, owners = {}, _owners(numbered, shared, writers)
    for number, _ in numbered:
        level[number] = 1 + max((level[o] for o in owners[number]), default=-1)
    return sorted(numbered, key=lambda item: (level[item[0]], item[0]))


def _parse_shard(text):
    """(K, N) from "K/N", or None when it is not that with 1 <= K <= N."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        return None
    k, n = (int(p) for p in parts)
    return (k, n) if 1 <= k <= n else None


def _training_steps(m):
    """The training steps one experiment adds to its group: its helpers and incremental steps (the first
    step is counted once per group, see shard_runs)."""
    steps = sum(m.incremental_schedule(len(m.get_new_classes_for_incremental_step(s))).steps
                for s in range(1, len(m.test_structure)))
    if m.uses_replay():
        steps += sum(m.helper_schedule(len(c)).steps for c in m.get_helpers_classes())
    return steps


def shard_runs(runs, shard, config_dir, extra_files=(), params=(), overrides_dir=None):
    """The runs of share K of N (shard = (K, N)), in plan order: the groups of share_groups (never split, so
    that no two machines write one artifact) dealt out largest first to the share with the fewest training
    steps so far (a group weighs its first step once plus each experiment's helpers and incremental steps).
    Deterministic: every machine computes the same shares."""
    k, n = shard
    groups = share_groups(runs, config_dir, extra_files, params, overrides_dir)
    weights = []
    for group in groups:
        managers = [_manager(experiment_gin_files(c, config_dir, extra_files, overrides_dir),
                             list(params) + list(v), t, s) for c, t, s, v in group]
        weights.append(managers[0].first_step_schedule().steps + sum(_training_steps(m) for m in managers))
    gin.clear_config()
    loads, mine = [0] * n, set()
    for index in sorted(range(len(groups)), key=lambda i: (-weights[i], i)):
        share = min(range(n), key=lambda j: (loads[j], j))
        loads[share] += weights[index]
        if share == k - 1:
            mine.update(groups[index])
    return [run for run in runs if run in mine]


def sweep(runs, config_dir, extra_files=(), params=(), overrides_dir=None, jobs=1, context=None):
    """Runs every experiment of `runs`; one that fails is logged and the others go on.

    Args:
      extra_files, params: gin files and bindings parsed after each experiment's config.
      overrides_dir: a folder of per-config gin files (`<config>.gin`); an experiment's one, when it exists,
        is parsed right after the first of extra_files (the embedded benchmark: config/embedded/JOINT.gin).
      jobs: with more than 1, up to `jobs` processes take the experiments one at a time (each with TensorFlow's
        default threads), in _queue_order. An artifact that several experiments need (artifact_writers) is
        written by the first of them in plan order, as in a serial sweep; the others wait for it. So every
        results file is the serial sweep's, and since an experiment is only taken after those it waits for,
        one of the running ones never waits.
      context: the training.Context that collects the experiments' times (those of the processes are added
        to it); None: the process's default one.

    A process of the pool that dies (e.g. SIGKILL from the out-of-memory killer) fails its experiment, named with
    the signal; the experiments that had not started, and those the pool then stopped, run in a fresh pool
    (_pool_round).

    Returns the list of failures as (config, test_type, replay_source, error text)."""
    import training  # pylint: disable=import-outside-toplevel  (see the imports)
    context = context or training.default_context()
    numbered = list(enumerate(runs, 1))
    if jobs <= 1:
        return _sweep_numbered(numbered, len(runs), config_dir, extra_files, params, overrides_dir, context)
    shared = _runs_shared_names(runs, config_dir, extra_files, params, overrides_dir)
    writers = _writers(shared)
    queue, owners = _queue_order(numbered, shared, writers), _owners(numbered, shared, writers)
    failures = []
    with tempfile.TemporaryDirectory(prefix="recall-sweep-") as finished, \
            tempfile.TemporaryDirectory(prefix="recall-sweep-marks-") as marks:
        while queue:
            round_failures, queue = _pool_round(queue, jobs, len(runs), (config_dir, list(extra_files), list(params),
                                                overrides_dir, writers, finished), owners, marks, context)
            failures += round_failures
    return sorted(failures, key=lambda f: runs.index(f[:4]))


def _pool_round(queue, jobs, total, arguments, owners, marks, context):
    """Runs the experiments of `queue` (numbered runs, in queue order) in a fresh pool of up to `jobs` processes.
    `arguments`: _sweep_process's (config_dir, extra_files, params, overrides_dir, writers, finished).

    A process of the pool that dies breaks the pool (concurrent.futures): it stops its other processes (SIGTERM)
    and fails every experiment not done with BrokenProcessPool. Here the experiment that ran in the dead process
    fails, named with the process's exit signal or status (it would likely die again: the out-of-memory killer's
    SIGKILL); those that ran in the processes the pool stopped, and those not started yet, are given back to run
    again in a fresh pool (they resume from their artifacts).

    Returns (failures, the part of `queue` to run again)."""
    finished = arguments[-1]
    failures, broken, answered = [], [], 0
    with runtime.worker_pool(min(jobs, len(queue))) as pool:
        done = [pool.submit(_sweep_process, number, run, total, *arguments, sorted(owners[number]), marks)
                for number, run in queue]
        for (number, run), future in zip(queue, done):
            try:
                run_failures, times = future.result()
            except futures.process.BrokenProcessPool:
                broken.append((number, run))
                continue
            except Exception as e:  # pylint: disable=broad-except  (its result did not come back)
                logging.error("experiment %d %s: its process gave no result: %r", number, run, e)
                run_failures, times = [run + (f"{type(e).__name__}: {e}",)], {}
            answered += 1
            failures += run_failures
            context.times.update(times)
        # pid -> multiprocessing.Process of the pool (no public view of them; the exit codes are read after the
        # block, which waits until the pool has ended them all)
        processes = dict(getattr(pool, "_processes", None) or {})
    again, died = [], []
    for number, run in broken:
        pid = _started_by(marks, number)
        code = processes[pid].exitcode if pid in processes else None
        if pid is None or code == -signal.SIGTERM or os.path.exists(os.path.join(finished, str(number))):
            again.append((number, run))  # not started; stopped by the pool; or done with its answer lost
            continue
        reason = f"its process {pid} died: {_exit_text(code)}"
        logging.error("experiment %d/%d %s: %s; not run again", number, total, run, reason)
        died.append(run + (reason,))
        artifacts.write_text(os.path.join(finished, str(number)), "")  # the experiments waiting for it go on
    if again and not died and not answered:  # nothing moved: a fresh pool might break the same way for ever
        codes = sorted({p.exitcode for p in processes.values()}, key=str)
        return failures + [run + (f"the process pool broke (its processes' exit codes: {codes})",)
                           for _, run in again], []
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


_PROCESS_CONTEXT = []  # the training.Context of a sweep's worker process, made by its first experiment


def _sweep_process(number, run, total, config_dir, extra_files, params, overrides_dir, writers, finished,
                   owners=(), marks=None):
    """One experiment of a parallel sweep, in a worker process, without progress bars (the bars of parallel
    processes would overwrite each other). It waits for the artifacts `writers` gives to earlier experiments,
    and leaves the file `finished`/<number> when it ends. Returns (failures, times of this experiment).

    With `marks` (a folder), it leaves `<number>.started` (its process id) there when it starts and
    `<number>.taken` once it holds the experiment's lock, and it takes that lock only after every experiment of
    `owners` (those that write an artifact it needs) has taken its own or ended (_wait_for_owners)."""
    import training  # pylint: disable=import-outside-toplevel  (see the imports)
    if not _PROCESS_CONTEXT:
        logging.use_absl_handler()  # the log format of the main process (app.run installs it there)
        logging.set_verbosity(logging.INFO)
        _PROCESS_CONTEXT.append(training.Context(progress_bars=False))
    context = _PROCESS_CONTEXT[0]
    context.shared, context.experiment, context.finished_dir = writers, number, finished
    before, start = collections.Counter(context.times), time.time()
    locked = {}
    if marks is not None:
        artifacts.write_text(os.path.join(marks, f"{number}.started"), str(os.getpid()))
        locked["on_locked"] = lambda k: artifacts.write_text(os.path.join(marks, f"{k}.taken"), "")
    try:
        if marks is not None:
            _wait_for_owners(number, owners, finished, marks, context)
        failures = _sweep_numbered([(number, run)], total, config_dir, extra_files, params, overrides_dir, context,
                                   **locked)
    finally:
        artifacts.write_text(os.path.join(finished, str(number)), "")
    logging.info("experiment %d/%d done in %.1f s (process %d)", number, total, time.time() - start, os.getpid())
    return failures, dict(context.times - before)


def _wait_for_owners(number, owners, finished, marks, context):
    """Before experiment `number` of a parallel sweep takes its lock, waits until each experiment of `owners` (those
    that write an artifact it needs; earlier in the queue, so started before it) holds its own lock
    (`marks`/<owner>.taken) or has ended (`finished`/<owner>). So a process that holds an experiment's lock and waits
    for an artifact (training.Context.wait_for) only ever waits for an experiment of its own sweep that runs under
    its lock, earlier in plan order; never for one that waits for the lock of an experiment another sweep on the
    same folder runs. Two sweeps on one folder then cannot wait for each other in a circle, whatever the orders of
    their plans (README "Concurrency")."""
    import training  # pylint: disable=import-outside-toplevel  (see the imports)

    def pending():
        return [o for o in owners if not (os.path.exists(os.path.join(marks, f"{o}.taken"))
                                          or os.path.exists(os.path.join(finished, str(o))))]

    waiting = pending()
    if not waiting:
        return
    logging.info("experiment %d: waiting for experiment(s) %s, which write what it needs, to start", number, waiting)
    start = time.perf_counter()
    while pending():
        time.sleep(training.WAIT_POLL_SECONDS)
    context.times["waiting for another process"] += time.perf_counter() - start


def _sweep_numbered(numbered, total, config_dir, extra_files, params, overrides_dir, context, on_locked=None):
    """Runs the numbered experiments one after the other (run_experiment); `on_locked(number)` is called once an
    experiment holds its lock. Returns the failures."""
    failures = []
    for k, (config, test_type, source, variant) in numbered:
        logging.info("experiment %d/%d: %s %s %s%s", k, total, config, test_type, source,
                     "".join(f" [{v}]" for v in variant))
        try:
            run_experiment(experiment_gin_files(config, config_dir, extra_files, overrides_dir),
                           list(params) + list(variant), test_type, source, context,
                           on_locked=None if on_locked is None else functools.partial(on_locked, k))
        except Exception as e:  # pylint: disable=broad-except
            logging.error("experiment %s %s %s %s failed: %s\n%s", config, test_type, source, variant, e,
                          traceback.format_exc())
            failures.append((config, test_type, source, variant, f"{type(e).__name__}: {e}"))
    return failures


def run_experiment(files, params, test_type, replay_source, context=None, on_locked=None):
    """Parses the gin files and bindings afresh and runs one experiment (Training(manager).train()) under the
    experiment's lock (results.experiment_lock, beside its results file): another process that runs the same
    experiment on the same folder (a second sweep) waits until this one has finished it, then finds every stage
    complete and reuses it. `on_locked()` is called once the lock is held. A non-chief worker of a multi-worker run
    takes no lock: it writes into a scratch folder of its own, and its chief holds the lock."""
    try:
        manager = _manager(files, params, test_type, replay_source)
    except ValueError as e:
        raise ValueError(f"gin files {files}: {e}") from None
    import results  # pylint: disable=import-outside-toplevel  (see the imports)
    import training  # pylint: disable=import-outside-toplevel
    run = training.Training(manager, context=context)
    if not run.chief:
        run.train()
        return manager
    start, waited = time.perf_counter(), []

    def waiting(pid):
        waited.append(pid)
        logging.info("experiment %s: another process holds its lock %s%s: waiting until it has run the experiment",
                     manager.get_validation_file_name(), results.lock_path(run.results_file),
                     f" (process {pid})" if pid else "")

    with results.experiment_lock(run.results_file, on_wait=waiting):
        if waited:
            seconds = time.perf_counter() - start
            run.context.times["waiting for another process"] += seconds
            logging.info("experiment %s: lock taken after %.1f s", manager.get_validation_file_name(), seconds)
        if on_locked is not None:
            on_locked()
        run.train()
    return manager


def default_jobs(benchmark):
    """2 for the embedded benchmark on a CPU, where the small network keeps only part of the cores busy; more
    would not pay (the biggest group of experiments sharing a first step holds half of the sweep's training).
    1 for real VOC, a GPU or a multi-worker run (TF_CONFIG)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the imports)
    if benchmark != "embedded" or "TF_CONFIG" in os.environ or tf.config.list_physical_devices("GPU"):
        return 1
    return min(2, os.cpu_count() or 1)


def voc_data_present(base="."):
    return paths.prepared(paths.data_dir(base))


def checked_plan(extra_files, params, overrides_dir=None, benchmark="embedded"):
    """The sweep's experiments from the flags, every flag checked first: an unknown config, setup or source,
    a selection that runs nothing, a missing gin file, a gin file that is not gin syntax (named with its line), a
    gin binding that does not parse (each binding is tried alone, so the error names it), or a bound value that
    TrainManager, Training or the backbone rejects (check_bound_values) is an absl usage error (exit status 2),
    before any work."""
    if FLAGS.shard is not None and _parse_shard(FLAGS.shard) is None:
        raise app.UsageError(f"--shard: expected K/N with 1 <= K <= N, e.g. 2/8; got {FLAGS.shard!r}", exitcode=2)
    try:
        runs = plan(FLAGS.configs, FLAGS.test_type, FLAGS.replay_source, FLAGS.config_dir,
                    method_test_types=None if FLAGS["test_type"].present else METHOD_TEST_TYPES,
                    variants=FLAGS.recall_variants or DEFAULT_VARIANTS[benchmark])
    except ValueError as e:
        raise app.UsageError(str(e), exitcode=2) from None
    _register_bindings()
    if not runs:
        raise app.UsageError(f"nothing to run: --configs {FLAGS.configs} with --test_type {FLAGS.test_type} "
                             f"selects no experiment (JOINT runs only with --configs JOINT; the other configs "
                             f"need a setup other than JOINT)", exitcode=2)
    missing = [f for f in extra_files if not os.path.exists(f)]
    if missing:
        raise app.UsageError(f"--gin_file: not found: {missing}", exitcode=2)
    every_file = dict.fromkeys(f for config, _, _, _ in runs
                               for f in experiment_gin_files(config, FLAGS.config_dir, extra_files, overrides_dir))
    for path in every_file:
        error = gin_file_error(path)
        if error:
            raise app.UsageError(f"not a gin file: {error}", exitcode=2)
    files = [os.path.join(FLAGS.config_dir, runs[0][0] + ".gin")] + extra_files
    for bindings in [[]] + [[binding] for binding in params]:  # the files alone first: a binding is not blamed
        try:
            gin.clear_config()
            gin.parse_config_files_and_bindings(files, bindings)
        except Exception as e:  # pylint: disable=broad-except  (gin raises several kinds)
            bracket = _unclosed_bracket(bindings[0]) if bindings else None
            message = f"{bracket.string!r} is never closed" if bracket else e
            where = f"--gin_param {bindings[0]!r}" if bindings else f"gin files {files}"
            raise app.UsageError(f"{where}: {message}", exitcode=2) from None
    for config, test_type, source, variant in runs:  # every experiment's bindings and bound values
        files = experiment_gin_files(config, FLAGS.config_dir, extra_files, overrides_dir)
        try:
            _manager(files, list(params) + list(variant), test_type, source)
            check_bound_values()
        except ValueError as e:
            raise app.UsageError(f"{config} {test_type} {source} (gin files {files}): {e}", exitcode=2) from None
    gin.clear_config()
    return runs


def main(argv):
    del argv
    run_start = time.time()
    benchmark = FLAGS.benchmark
    if benchmark == "auto":
        benchmark = "voc" if voc_data_present() else "embedded"
    extra_files, base, overrides_dir = list(FLAGS.gin_file), ".", None
    if benchmark == "embedded":
        overrides_dir = os.path.join(FLAGS.config_dir, "embedded")
        extra_files = [os.path.join(overrides_dir, "embedded.gin")] + extra_files
    runs = checked_plan(extra_files, FLAGS.gin_param, overrides_dir, benchmark)  # before any work
    if FLAGS.shard:
        shard = _parse_shard(FLAGS.shard)
        runs = shard_runs(runs, shard, FLAGS.config_dir, extra_files, FLAGS.gin_param, overrides_dir)
        logging.info("shard %d/%d: %d of the sweep's experiments: %s", *shard, len(runs), runs)
    import embedded_benchmark  # pylint: disable=import-outside-toplevel  (see the imports)
    import results  # pylint: disable=import-outside-toplevel
    import training  # pylint: disable=import-outside-toplevel
    jobs = FLAGS.jobs or default_jobs(benchmark)
    timings = {}
    if benchmark == "embedded":
        gin.clear_config()
        gin.parse_config_files_and_bindings(extra_files, FLAGS.gin_param)
        base = gin.query_parameter("TrainManager.base_folder_path")
        logging.info("no prepared data under ./data: running the embedded benchmark under %s", base)
        start = time.time()
        built = embedded_benchmark.build(base, parallel=jobs > 1)
        timings.update({f"embedded build: {k}": v for k, v in built.items()})
        timings["embedded build"] = time.time() - start
    start = time.time()
    context = training.Context()
    failures = sweep(runs, FLAGS.config_dir, extra_files, FLAGS.gin_param, overrides_dir, jobs, context)
    timings["experiments"] = time.time() - start
    refused = []  # results files that hold a step twice (results.read_experiments)
    if context.chief_process():  # other workers of a multi-worker run leave the summary to the chief
        rows = results.summarize(os.path.join(base, "outputs"), refused=refused)
        print(results.markdown_table(rows))
        print(results.method_setup_table(rows))
        print(results.recall_vs_finetuning(rows))
        print(results.recall_vs_baselines(rows))
    timings["whole run"] = time.time() - run_start
    summed = f" (summed over {jobs} processes)" if jobs > 1 else ""
    timings.update({f"experiments: {k}{summed}": v for k, v in sorted(context.times.items())})
    for phase, seconds in timings.items():
        logging.info("time: %s %.1f s", phase, seconds)
    logging.info("the %s sweep of %d experiments took %.1f min on a %s CPU, %d process(es)", benchmark, len(runs),
                 timings["whole run"] / 60, runtime.cpu_kind(), jobs)
    for failure in failures:
        logging.error("FAILED: %s", failure)
    for path, step in refused:
        logging.error("REFUSED: %s holds step %d twice: left out of the summary (delete the file to validate its "
                      "steps again, or one of the two blocks)", path, step)
    if failures or refused:
        sys.exit(1)


def cli():
    """The console script `recall`."""
    app.run(main)


if __name__ == "__main__":
    cli()
