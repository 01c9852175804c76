"""The benchmark scripts, run from the project root as `python -m benchmarks.<name>` (or
`python benchmarks/<name>.py`): bench (one training step), bench_perf (every stage against the machine's
peak), bench_input (the input pipeline alone), bench_dilation (dilated convolutions two ways), bench_build
(the embedded build serial vs parallel) and bench_fidelity (the original's behaviours, switch by switch).
Each defines its own flags, only when run as a script, so that one can import another's functions; timing.py
is their one timing helper. Figures, commands and method are in benchmarks/BENCHMARKS.md.
"""
