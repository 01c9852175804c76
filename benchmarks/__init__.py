"""The benchmark scripts, run from the project root as `python -m benchmarks.<name>` (or
`python benchmarks/<name>.py`): bench (one training step), bench_perf (every stage against the machine's
peak), bench_input (the input pipeline alone), bench_dilation (dilated convolutions two ways), bench_build
(the embedded build serial vs parallel), bench_fidelity (the original's behaviours, switch by switch),
bench_torch (our training step against the same network in PyTorch, paired; optional: runs only where torch
is installed), bench_paper_path (the paper's commands end to end at full network size on a generated VOC
folder) and gpu_estimate (FLOPs of the paper's sweep and its time at a stated GPU throughput: an estimate).
Each defines its own flags, only when run as a script, so that one can import another's functions; timing.py
is their one timing helper. Figures, commands and method are in benchmarks/BENCHMARKS.md.
"""
