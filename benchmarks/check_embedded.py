"""What the embedded benchmark must show (issue 24, item 5), checked on a finished sweep's outputs folder.

    python -m benchmarks.check_embedded --outputs embedded/outputs [--min_gap 20]

Checks, reading only the results (results.read_experiments, summary_rows, finetuning_pairs):
  1. the paper's method (RECALL with Training.replay_label_input = "mean_subtracted") is at least --min_gap points
     of all-class mIoU (background excluded) above the fine-tuning run it is paired with (the same setup and
     protocol) on 15-1, 10-2 and 10-1, with each replay source;
  2. JOINT is the best row: its mIoU is above every other row's.
Prints one line per cell (gap, and whether it holds) and a verdict; exit status 0 when everything holds, 1 when a
check fails, 2 when the folder lacks a row the checks need.
"""
import sys

from absl import app, flags

import behaviours
import results

FLAGS = flags.FLAGS
flags.DEFINE_string("outputs", "embedded/outputs", "a finished sweep's outputs folder")
flags.DEFINE_float("min_gap", 20.0, "points the paper's method must lead fine-tuning by")

CHECKED_SETUPS = ("15-1", "10-2", "10-1")
PAPER = behaviours.variant(dict(behaviours.DEFAULTS, **{"Training.replay_label_input": "mean_subtracted"}))


def gap_checks(rows, min_gap, setups=CHECKED_SETUPS):
    """[(setup, protocol, replay source, RECALL mIoU, fine-tuning mIoU, gap, holds)] of the paper's variant: the
    RECALL rows whose switches include the paper's (another switch set beside it for every run of the folder, e.g.
    TrainManager.mixed_labels_per_experiment, is set for their fine-tuning pair too)."""
    checks = []
    for pair in results.finetuning_pairs(rows):
        r, f = pair["recall"], pair["finetuning"]
        if r["setup"] in setups and PAPER in r["variant"].split("; "):
            gap = r["miou_all"] - f["miou_all"]
            checks.append((r["setup"], r["protocol"], r["replay_source"], r["miou_all"], f["miou_all"], gap,
                           gap >= min_gap))
    return sorted(checks)


def joint_is_best(rows):
    """(JOINT's mIoU or None, the best other row's mIoU, holds)."""
    joint = [r["miou_all"] for r in rows if r["test_type"] == "JOINT"]
    others = [r["miou_all"] for r in rows if r["test_type"] != "JOINT"]
    if not joint:
        return None, max(others, default=None), False
    return joint[0], max(others, default=float("-inf")), joint[0] > max(others, default=float("-inf"))


def main(argv):
    del argv
    rows = results.summary_rows(results.read_experiments(FLAGS.outputs))
    checks = gap_checks(rows, FLAGS.min_gap)
    if not checks:
        print(f"{FLAGS.outputs}: no paper's-method row of {', '.join(CHECKED_SETUPS)} with a fine-tuning pair")
        return 2
    for setup, protocol, source, recall, finetuning, gap, holds in checks:
        print(f"{setup:5s} {protocol:11s} {source:6s} paper's RECALL {recall:5.1f}  fine-tuning {finetuning:5.1f}  "
              f"gap {gap:+5.1f}  {'holds' if holds else 'FAILS'}")
    joint, best, joint_holds = joint_is_best(rows)
    print(f"JOINT {joint if joint is not None else 'missing'}, best other row {best}: "
          f"{'holds' if joint_holds else 'FAILS'}")
    held = sum(c[-1] for c in checks)
    print(f"gap >= {FLAGS.min_gap:g}: {held} of {len(checks)} cells")
    return 0 if held == len(checks) and joint_holds else 1


if __name__ == "__main__":
    sys.exit(app.run(main))
