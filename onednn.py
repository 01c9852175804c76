"""Turns TensorFlow's oneDNN CPU kernels on; import this module before TensorFlow (the entry points do).

TensorFlow enables oneDNN by default only on x86 CPUs with AVX-512. Without it, this project's CPU training
runs on TensorFlow's generic kernels, which have no gradient of a dilated convolution (model.Conv2D then
falls back to space_to_batch) and are 7-15x slower on the embedded benchmark's network (BENCHMARKS.md,
"oneDNN"). An explicit TF_ENABLE_ONEDNN_OPTS in the environment is left as it is.
"""
import os
import sys

if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
