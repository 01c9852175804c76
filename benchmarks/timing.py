"""The benchmarks' one timing helper: wall-clock seconds (time.perf_counter) of blocks and of repeated calls.

    with timing.Stopwatch() as watch:       # one block
        build()
    watch.seconds

    waiting = timing.Stopwatch()            # many blocks: their sum (seconds) and each (laps)
    for _ in range(steps):
        with waiting:
            batch = next(batches)
    waiting.seconds, waiting.laps

    whole = timing.Stopwatch().start()      # a running total, read at any time
    whole.seconds

    t = timing.repeat(step, 5)              # one untimed warm-up call (its time kept), then 5 timed calls
    t.first, t.median, t.best, t.mean

And the machine's load around a benchmark (every script: --max_load, --force):

    load = timing.check_load(FLAGS.max_load, FLAGS.force)   # above --max_load: exits (status 2) unless --force
    ...
    print(load.report())                     # the load average before and after, flagged when under load
"""
import dataclasses
import os
import statistics
import sys
import time

from absl import flags


class Stopwatch:
    """Wall-clock seconds summed over the blocks run under it (`with watch:`, or start() ... stop())."""

    def __init__(self):
        self.laps = []  # seconds of each finished block, in order
        self._start = None

    def start(self):
        """Starts a block. Returns self."""
        if self._start is not None:
            raise RuntimeError("the stopwatch is already running")
        self._start = time.perf_counter()
        return self

    def stop(self):
        """Ends the running block. Returns its seconds."""
        if self._start is None:
            raise RuntimeError("the stopwatch is not running")
        lap = time.perf_counter() - self._start
        self._start = None
        self.laps.append(lap)
        return lap

    @property
    def seconds(self):
        """Seconds of every block so far, the running one included."""
        running = time.perf_counter() - self._start if self._start is not None else 0.0
        return sum(self.laps) + running

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
        return False


@dataclasses.dataclass(frozen=True)
class Timings:
    """Seconds of the calls of repeat(): `warmup` (untimed calls, e.g. tracing) and `times` (timed calls)."""
    warmup: tuple
    times: tuple

    @property
    def first(self):
        """The first call's seconds (with tracing / compilation, when fn is a tf.function's first call)."""
        return (self.warmup + self.times)[0]

    @property
    def median(self):
        return statistics.median(self.times)

    @property
    def best(self):
        """The fastest timed call: on a shared machine, the one least disturbed."""
        return min(self.times)

    @property
    def mean(self):
        return statistics.mean(self.times)


def repeat(fn, repeats, warmup=1):
    """Calls fn() `warmup` times (warm-up: tracing, caches; not among the timed calls), then `repeats` times,
    each call timed alone. fn must wait for its own result (e.g. end with `.numpy()`). Returns Timings."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeat: repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    warm, timed = Stopwatch(), Stopwatch()
    for _ in range(warmup):
        with warm:
            fn()
    for _ in range(repeats):
        with timed:
            fn()
    return Timings(tuple(warm.laps), tuple(timed.laps))


DEFAULT_MAX_LOAD = 1.5  # 1-minute load average on 2 cores: above it, another job shares the cores


def define_load_flags():
    """--max_load and --force of a benchmark script (see check_load)."""
    flags.DEFINE_float("max_load", DEFAULT_MAX_LOAD, "Refuse to time when the 1-minute load average is above this "
                       "(another job shares the cores and slows every figure).", lower_bound=0.0)
    flags.DEFINE_boolean("force", False, "Time even above --max_load; the output says the figures were taken "
                         "under load.")


@dataclasses.dataclass
class MachineLoad:
    """The load average (1, 5, 15 min) before a benchmark's timed part and after it (done())."""
    max_load: float
    before: tuple
    after: tuple = None

    @property
    def under_load(self):
        """True when the benchmark began on a machine busy with other work (its own load comes after)."""
        return self.before[0] > self.max_load

    def done(self):
        self.after = os.getloadavg()
        return self

    def report(self):
        """One line for the output: the loads, and a flag when the run began above max_load."""
        if self.after is None:
            self.done()
        line = (f"load average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in self.before)}, after "
                f"{', '.join(f'{x:.2f}' for x in self.after)}")
        if self.under_load:
            line += (f"; UNDER LOAD: the 1-minute load average was {self.before[0]:.2f}, above --max_load "
                     f"{self.max_load} (--force): absolute times are upper bounds, ratios measured side by side "
                     f"in this run still hold")
        return line


def check_load(max_load, force):
    """A MachineLoad begun now. Above max_load without force it prints why and exits with status 2: figures
    taken beside another job are not comparable (BENCHMARKS.md once held step times 1.9x too slow)."""
    load = MachineLoad(max_load, os.getloadavg())
    if load.under_load and not force:
        print(f"1-minute load average {load.before[0]:.2f} is above --max_load {max_load}: not timing on a busy "
              f"machine (wait for it to settle, or --force to time anyway, flagged as under load)", file=sys.stderr)
        sys.exit(2)
    return load
