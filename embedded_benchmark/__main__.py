"""python -m embedded_benchmark [--base embedded] [--seed 0]: builds the embedded benchmark (phases.py)."""
import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)
from embedded_benchmark.phases import cli

if __name__ == "__main__":
    cli()
