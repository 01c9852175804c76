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
"""
import dataclasses
import statistics
import time


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
