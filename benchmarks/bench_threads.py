"""Threads of a parallel embedded sweep: two processes with TensorFlow's default thread pools against two with one
thread each, paired in one job.

    python -m benchmarks.bench_threads [--processes 2] [--rounds 3] [--steps 300]

`main.py --jobs 2` runs two experiments at once on a 2-core CPU, each process with TensorFlow's and oneDNN's
default pools (as many threads as cores), so four busy threads share two cores. Each round starts `--processes`
copies of `benchmarks.bench` at once (the embedded network: units 1-1-1-1, width 0.25, 64x64, batch 16 as an
incremental step's 8 new + 8 replay samples, encoder+decoder and decoder only), once with the default pools and
once with TF_NUM_INTRAOP_THREADS = TF_NUM_INTEROP_THREADS = OMP_NUM_THREADS = 1, the two settings alternating,
and reports the summed training throughput of each round (steps per second over all processes, from each
process's median step) and the ratio one thread / default per round.
"""
import os
import re
import statistics
import subprocess
import sys

from absl import app
from absl import flags

from benchmarks import timing

FLAGS = flags.FLAGS
SETTINGS = {"default pools": {}, "one thread": {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
                                                 "OMP_NUM_THREADS": "1"}}
ROW = re.compile(r"^\| small \| [\d-]+ \| [\d.]+ \| \d+ \| ([a-z+]+) \| [\d.]+ \| ([\d.]+) \|", re.M)


def define_flags():
    flags.DEFINE_integer("processes", 2, "Processes started at once (main.py --jobs).", lower_bound=1)
    flags.DEFINE_integer("rounds", 3, "Rounds of each setting, alternating.", lower_bound=1)
    flags.DEFINE_integer("steps", 300, "Timed steps per mode in each process.", lower_bound=1)
    timing.define_load_flags()


def one_round(env_extra, processes, steps):
    """{mode: summed steps/s over the processes} of one round: `processes` copies of benchmarks.bench at once."""
    command = [sys.executable, "-m", "benchmarks.bench", "--networks=small", "--units=1,1,1,1", "--width=0.25",
               "--batch_size=16", "--image_size=64", f"--steps={steps}", "--force"]
    env = dict(os.environ, **env_extra)
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
                for _ in range(processes)]
    rates = {}
    for child in children:
        out, _ = child.communicate()
        if child.returncode:
            raise RuntimeError(f"benchmarks.bench exited with {child.returncode}")
        for mode, seconds in ROW.findall(out):
            rates[mode] = rates.get(mode, 0.0) + 1.0 / float(seconds)
    return rates


def main(argv):
    del argv
    load = timing.check_load(FLAGS.max_load, FLAGS.force)
    results = {name: [] for name in SETTINGS}
    for _ in range(FLAGS.rounds):
        for name, env in SETTINGS.items():
            results[name].append(one_round(env, FLAGS.processes, FLAGS.steps))
    modes = sorted(results["default pools"][0])
    print(f"{FLAGS.processes} processes at once, {FLAGS.rounds} rounds, median of {FLAGS.steps} steps each; "
          f"summed steps/s (batch 16, 64x64, units 1-1-1-1, width 0.25)")
    print("| setting | " + " | ".join(modes) + " |")
    print("|---|" + "---|" * len(modes))
    for name, rounds in results.items():
        print(f"| {name} | " + " | ".join(f"{statistics.median(r[m] for r in rounds):.1f}" for m in modes) + " |")
    for m in modes:
        ratios = [one[m] / default[m] for one, default in zip(results["one thread"], results["default pools"])]
        print(f"{m}: one thread / default pools per round {', '.join(f'{x:.2f}' for x in ratios)}")
    print(load.report())


if __name__ == "__main__":
    define_flags()
    app.run(main)
