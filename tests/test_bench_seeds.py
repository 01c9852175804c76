"""benchmarks/bench_seeds.py: the seed study's aggregation (on made-up summary rows: no training), its files and
the command line of each seed's main.py."""
import csv
import json
import math
import os
import statistics
import sys

import pytest

from benchmarks import bench_seeds

PAPER = "Training.replay_label_input = 'mean_subtracted'"


def _row(config, method, protocol, parameters, all_, old=None, new=None, source="none", variant="original",
         label="original", setup="10-1"):
    """A summary row (results.summary_rows' keys) of a made-up run."""
    return dict(config=config, test_type="ADD_ONE_TEN_TIMES", setup=setup, replay_source=source, variant=variant,
                variant_label=label, parameters=parameters, method=method, protocol=protocol, miou_all=all_,
                miou_old=all_ if old is None else old, miou_new=all_ if new is None else new)


def _seed(recall, paper, finetuning, joint, extra=()):
    return [_row("DISJOINT", "RECALL", "disjoint", "1.0.0.2", recall, old=recall - 5, new=recall + 5, source="gan"),
            _row("DISJOINT", "RECALL", "disjoint", "1.0.0.2", paper, source="gan", variant=PAPER,
                 label="mean-subtracted"),
            _row("FINE_TUNING_DISJOINT", "fine-tuning", "disjoint", "1.0.0.5", finetuning),
            _row("JOINT", "joint", None, "3.0.0.0", joint, new=math.nan, setup="joint")] + list(extra)


# miou_all per seed: RECALL (original) 10, 12, 14; RECALL (paper) 30, 20, 25; fine-tuning 20, 21, 22; JOINT 70 x 3.
# A fine-tuning run of another protocol's config ran in seed 0 only.
ROWS = {0: _seed(10.0, 30.0, 20.0, 70.0, [_row("FINE_TUNING", "fine-tuning", "sequential", "1.0.0.4", 15.0)]),
        1: _seed(12.0, 20.0, 21.0, 70.0),
        2: _seed(14.0, 25.0, 22.0, 70.0)}


def test_cells_over_the_seeds():
    cells, _ = bench_seeds.seed_study(ROWS)
    by = {(c["config"], c["variant_label"]): c for c in cells}
    assert len(cells) == 5
    recall = by[("DISJOINT", "original")]
    assert (recall["n"], recall["seeds"], recall["variant"], recall["protocol"]) == (3, "0 1 2", "original", "disjoint")
    assert (recall["miou_all_mean"], recall["miou_all_std"]) == (12.0, 2.0)  # sample std (ddof=1)
    assert (recall["miou_all_min"], recall["miou_all_max"]) == (10.0, 14.0)
    assert (recall["miou_old_mean"], recall["miou_new_mean"]) == (7.0, 17.0)
    paper = by[("DISJOINT", "mean-subtracted")]
    assert paper["variant"] == PAPER and paper["miou_all_std"] == pytest.approx(statistics.stdev([30, 20, 25]))
    joint = by[("JOINT", "original")]
    assert joint["miou_all_std"] == 0.0 and math.isnan(joint["miou_new_mean"])  # no new classes: NaN, not 0
    once = by[("FINE_TUNING", "original")]
    assert once["n"] == 1 and once["miou_all_mean"] == 15.0 and math.isnan(once["miou_all_std"])


def test_gaps_and_the_noise_rule():
    """Each RECALL variant's gap to the fine-tuning run it is paired with in each seed; beyond the noise when
    |mean gap| > 2 x the pooled std of the two cells."""
    _, gaps = bench_seeds.seed_study(ROWS)
    by = {g["variant"]: g for g in gaps}
    assert len(gaps) == 2 and all(g["finetuning"] == "FINE_TUNING_DISJOINT 1.0.0.5" for g in gaps)
    original = by["original"]  # gaps -10, -9, -8; stds 2 and 1
    assert (original["n"], original["gap_mean"], original["gap_std"]) == (3, -9.0, 1.0)
    assert original["pooled_std"] == pytest.approx(math.sqrt((2 * 4 + 2 * 1) / 4))
    assert original["beyond_noise"] == "yes"  # 9 > 2 x 1.58
    paper = by[PAPER]  # gaps 10, -1, 3: mean 4, under 2 x sqrt((2 x 25 + 2 x 1) / 4) = 7.2
    assert paper["gap_mean"] == pytest.approx(4.0) and paper["gap_std"] == pytest.approx(statistics.stdev([10, -1, 3]))
    assert paper["pooled_std"] == pytest.approx(math.sqrt(13)) and paper["beyond_noise"] == "no"
    _, gaps = bench_seeds.seed_study({0: ROWS[0]})  # one seed: no noise estimate, no verdict
    assert {g["beyond_noise"] for g in gaps} == {""} and all(math.isnan(g["pooled_std"]) for g in gaps)
    assert bench_seeds.pooled_std(3, 2.0, 3, 1.0) == pytest.approx(math.sqrt(2.5))
    assert math.isnan(bench_seeds.pooled_std(1, math.nan, 3, 1.0))


def test_a_cell_twice_in_one_seed_is_a_named_error():
    with pytest.raises(ValueError, match=r"seed 1: two rows of the cell .*'config': 'JOINT'"):
        bench_seeds.seed_study({1: ROWS[1] + ROWS[1][-1:]})


def test_the_study_files(tmp_path):
    cells, gaps = bench_seeds.seed_study(ROWS)
    runs = {0: ("ran", 3600.0), 1: ("finished before, not run again", 3400.0), 2: ("ran", 3500.0)}
    markdown = bench_seeds.write_study(cells, gaps, str(tmp_path), [0, 1, 2], runs=runs,
                                       load="load average (1, 5, 15 min) before 0.10, 0.20, 0.30, after 2.00")
    assert (tmp_path / "seed_study.md").read_text() == markdown
    with open(tmp_path / "seed_study.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == bench_seeds.CELL_COLUMNS and len(table) == 5
    recall = next(r for r in table if r["config"] == "DISJOINT" and r["variant"] == "original")
    assert (recall["n"], recall["miou_all_mean"], recall["miou_all_std"], recall["miou_all_max"]) == (
        "3", "12.00", "2.00", "14.00")
    assert next(r for r in table if r["config"] == "JOINT")["protocol"] == ""
    with open(tmp_path / "seed_study_gaps.csv") as f:
        gap_rows = list(csv.DictReader(f))
    assert list(gap_rows[0]) == bench_seeds.GAP_COLUMNS
    assert [(g["variant"], g["gap_mean"], g["beyond_noise"]) for g in gap_rows] == [
        ("original", "-9.00", "yes"), (PAPER, "4.00", "no")]
    # The README's table as mean ± std, then every cell, the gaps with the rule, the runs and the load.
    assert "| FT (disjoint) | 21.0 ± 1.0 |" in markdown
    assert "| RECALL disj. gan | 12.0 ± 2.0 |" in markdown and "| RECALL disj. gan (mean-subtracted) | 25.0 ± 5.0 |" \
        in markdown
    assert "| JOINT | 70.0 ± 0.0 |" in markdown and "| FT (sequential) | 15.0 |" in markdown
    assert "| RECALL | disjoint | gan | original | DISJOINT | 10-1 | 3 | 12.0 ± 2.0 | 10.0 - 14.0 | 7.0 ± 2.0 | " \
           "17.0 ± 2.0 |" in markdown
    assert ("| 10-1 | disjoint | DISJOINT | gan | original | FINE_TUNING_DISJOINT 1.0.0.5 | 3 | -9.0 ± 1.0 | 1.58 | "
            "yes |") in markdown
    assert "> 2 x the pooled standard deviation" in markdown
    assert "- seed 1: finished before, not run again, 3400 s" in markdown and markdown.rstrip().endswith("after 2.00")


def test_each_seed_runs_main_py_in_its_own_folder(tmp_path):
    folder = bench_seeds.seed_folder(str(tmp_path / "seeds"), 2)
    assert folder == str(tmp_path / "seeds" / "seed2")
    command = bench_seeds.main_command(2, folder, ["DISJOINT", "FINE_TUNING_DISJOINT"], bench_seeds.SEED_TEST_TYPES,
                                       ["gan"], jobs=2, gin_params=["embedded.seed = 9", "TrainManager.batch_size = 4"])
    assert command[:2] == [sys.executable, os.path.join(bench_seeds.ROOT, "main.py")]
    text = " ".join(command)
    assert ("--benchmark embedded --configs DISJOINT,FINE_TUNING_DISJOINT "
            "--test_type ADD_ONE_ONE_TIME,ADD_ONE_FIVE_TIMES,ADD_ONE_TEN_TIMES --replay_source gan --jobs 2") in text
    assert "--recall_variants" not in text  # main.py's default on the embedded benchmark: both variants
    bindings = [command[i + 1] for i, a in enumerate(command) if a == "--gin_param"]
    assert bindings == ["embedded.seed = 9", "TrainManager.batch_size = 4", "embedded.seed = 2",  # the seed's last
                        "Training.seed = 2", f'TrainManager.base_folder_path = "{folder}"']
    # A seed is run again unless its main.py finished with the same command line.
    assert bench_seeds.finished(folder, command) is None
    os.makedirs(folder)
    with open(os.path.join(folder, bench_seeds.MARKER), "w") as f:
        json.dump({"command": command[1:], "seconds": 61.5}, f)
    assert bench_seeds.finished(folder, command) == 61.5
    other = bench_seeds.main_command(2, folder, ["DISJOINT"], bench_seeds.SEED_TEST_TYPES, ["gan"])
    assert bench_seeds.finished(folder, other) is None
    with open(os.path.join(folder, bench_seeds.MARKER), "w") as f:
        f.write("{not json")
    assert bench_seeds.finished(folder, command) is None


def test_read_seeds_reads_each_seed_folder(tmp_path):
    """A seed folder without results gives no rows (a seed whose main.py failed early)."""
    assert bench_seeds.read_seeds(str(tmp_path), [0, 1]) == {0: [], 1: []}
