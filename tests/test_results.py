"""Tests of results.py: the original's results-file text, its parser, the JSON descriptions and the
summaries read through them."""
import csv
import json
import math
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

import metrics
from conftest import ROOT
import results
from test_metrics import CM
from train_manager import TrainManager

EXPECTED_INCREMENTAL = (
    "\n"
    "################################# VALIDATION RESULTS OF STEP 1####################################\n"
    "LOSS\n0.5\n\n"
    "mIoU\n0.3611111111111111\n\n"
    "class_iou\n['0.250', '0.500', '0.333', None]\n\n"
    "mean class accuracy\n0.5555555555555555\n\n"
    "mean pixel accuracy\n0.5714285714285714\n\n"
    "class accuracy\n['0.500', '0.667', '0.500', None]\n\n"
    "old classes miou [0, 1]\n0.375\n\n"
    "new classes miou [2]\n0.3333333333333333\n\n"
    "old classes mean accuracy [0, 1]\n0.5833333333333333\n\n"
    "new classes mean accuracy [2]\n0.5\n\n")


def test_format_is_the_original_text():
    assert results.format_results_block(1, 0.5, CM, [0, 1], [2]) == EXPECTED_INCREMENTAL
    first = results.format_results_block(0, np.float32(1.25), tf.constant(CM), None, [0, 1, 2])
    assert first == EXPECTED_INCREMENTAL.split("old classes")[0].replace("STEP 1#", "STEP 0#") \
        .replace("LOSS\n0.5", "LOSS\n1.25")
    assert "old classes" not in results.format_results_block(0, 1.0, CM, [], [0, 1, 2])


def test_format_parse_round_trip(tmp_path):
    path = str(tmp_path / "outputs" / "run (T1_P1.0.0.1).txt")
    results.append_results_block(path, results.format_results_block(0, 0.75, CM, None, [0, 1, 2]))
    results.append_results_block(path, results.format_results_block(1, 0.5, CM, [0, 1], [2]))
    empty = np.zeros((4, 4))
    results.append_results_block(path, results.format_results_block(2, float("nan"), empty, [0, 1, 2], [3]))
    first, second, third = results.parse_results_file(path)
    assert first["step"] == 0 and first["loss"] == 0.75
    assert first["miou"] == metrics.get_mean_iou(CM, [0, 1, 2])
    assert first["class_iou"] == [0.25, 0.5, 0.333, None]
    assert first["class_accuracy"] == [0.5, 0.667, 0.5, None]
    assert first["mean_pixel_accuracy"] == metrics.get_mean_pixel_accuracy(CM, [0, 1, 2])
    assert first["old_classes"] is None and first["old_miou"] is None
    assert second["step"] == 1 and second["old_classes"] == [0, 1] and second["new_classes"] == [2]
    assert second["old_miou"] == 0.375 and second["new_accuracy"] == 0.5
    assert second["old_accuracy"] == metrics.get_mean_class_accuracy(CM, [0, 1])
    assert third["step"] == 2 and math.isnan(third["loss"]) and math.isnan(third["miou"])
    assert third["class_iou"] == [None] * 4 and third["new_classes"] == [3]


def test_parse_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.txt"):
        results.parse_results_file(str(tmp_path / "nothere.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text(EXPECTED_INCREMENTAL.replace("mIoU\n0.36", "mIoU\nzero.36"))
    with pytest.raises(ValueError, match=r"bad\.txt: line 7: expected a number"):
        results.parse_results_file(str(bad))
    bad.write_text(EXPECTED_INCREMENTAL.replace("old classes miou [0, 1]", "old classes miou [0, 1"))
    with pytest.raises(ValueError, match="unknown entry"):
        results.parse_results_file(str(bad))
    bad.write_text(EXPECTED_INCREMENTAL.replace("class_iou\n['0.250'", "class_iou\n{'0.250'"))
    with pytest.raises(ValueError, match="line 10: expected a Python list"):
        results.parse_results_file(str(bad))
    bad.write_text("LOSS\n0.5\n")
    with pytest.raises(ValueError, match="header"):
        results.parse_results_file(str(bad))
    bad.write_text(EXPECTED_INCREMENTAL.replace("mean pixel accuracy", "mean pixel acc"))
    with pytest.raises(ValueError, match=r"line 15: unknown entry 'mean pixel acc'"):
        results.parse_results_file(str(bad))
    bad.write_text(EXPECTED_INCREMENTAL.split("mIoU")[0])
    with pytest.raises(ValueError, match=r"block of step 1 lacks \['miou'"):
        results.parse_results_file(str(bad))


def _block(step, class_iou, old=None, new=None):
    cm_classes = [c for c, v in enumerate(class_iou) if v is not None]
    text = results.format_results_block(step, 0.5, _diagonal_cm(class_iou), old, new or cm_classes)
    return text


def _diagonal_cm(class_iou):
    """A confusion matrix whose per-class IoUs are the given values (None: class absent)."""
    import numpy as np
    n = len(class_iou)
    cm = np.zeros((n, n), np.int64)
    for c, v in enumerate(class_iou):
        if v is None:
            continue
        tp = int(round(v * 100))
        cm[c, c] = tp
        cm[c, (c + 1) % n] += 100 - tp  # misses counted as another class
    return cm


def _experiment(base, config, test_type, source, text, *bindings, gin_text=None):
    """Writes an experiment's results file, its operative config `gin_text` if given (before the description, as
    Training.train does) and its description (results.write_description of the manager of `config`); returns
    the results file's path."""
    gin.clear_config()
    gin.parse_config_files_and_bindings([os.path.join(ROOT, "config", config + ".gin")],
                                        [f'TrainManager.base_folder_path = "{base}"'] + list(bindings))
    m = TrainManager(test_type, source)
    gin.clear_config()
    path = m.get_validation_file_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    if gin_text is not None:
        with open(results.gin_path(path), "w") as f:
            f.write(gin_text)
    results.write_description(m)
    return path


def test_description_says_what_the_experiment_was(tmp_path):
    path = _experiment(tmp_path, "DISJOINT", "ADD_FIVE_TWO_TIMES", "flickr", _block(0, [0.5] * 11))
    assert os.path.basename(path) == "DISJOINT (T2_P1.0.0.2_flickr).txt"
    with open(results.description_path(path)) as f:
        doc = json.load(f)
    assert doc == {"config": "DISJOINT", "test_type": "ADD_FIVE_TWO_TIMES", "n_classes": 21,
                   "parameters": "1.0.0.2", "replay_source": "flickr", "protocol": "disjoint",
                   "behaviours": None,  # no operative config beside the results file
                   "results_file": "DISJOINT (T2_P1.0.0.2_flickr).txt"}
    path = _experiment(tmp_path, "FINE_TUNING_DISJOINT", "ADD_FIVE_TWO_TIMES", "gan", "")
    with open(results.description_path(path)) as f:
        assert json.load(f)["replay_source"] == "none"  # interleave_ratio_old = 0: no replay, whatever the name


def test_summary_rows_from_results_files(tmp_path):
    """Old / new / all mIoU of the last step and the gap to JOINT, computed from the files alone."""
    outputs = str(tmp_path / "outputs")
    joint_iou = [0.9] + [0.8] * 20
    joint = _experiment(tmp_path, "JOINT", "JOINT", None, _block(0, joint_iou))
    joint_iou = results.parse_results_file(joint)[0]["class_iou"]  # as the file rounds them
    final = [0.9] + [0.6] * 19 + [0.3]
    text = _block(0, [0.9] + [0.7] * 19 + [None]) + _block(1, final, list(range(20)), [20])
    path = _experiment(tmp_path, "DISJOINT", "ADD_ONE_ONE_TIME", "gan", text)
    (tmp_path / "outputs" / "notes.txt").write_text("not a results file")
    rows = {r["config"]: r for r in results.summarize(outputs)}
    disjoint = rows["DISJOINT"]
    iou = results.parse_results_file(path)[-1]["class_iou"]
    assert disjoint["setup"] == "19-1" and disjoint["replay_source"] == "gan"
    assert disjoint["miou_old"] == pytest.approx(100 * sum(iou[1:20]) / 19)
    assert disjoint["miou_new"] == pytest.approx(100 * iou[20])
    assert disjoint["miou_all"] == pytest.approx(100 * sum(iou[1:21]) / 20)
    assert disjoint["miou_all_bg"] == pytest.approx(100 * sum(iou) / 21)
    assert disjoint["delta_vs_joint"] == pytest.approx(disjoint["miou_all"] - 100 * sum(joint_iou[1:]) / 20)
    assert rows["JOINT"]["setup"] == "joint" and rows["JOINT"]["replay_source"] == "none"
    tex = (tmp_path / "outputs" / "summary.tex").read_text()
    assert "DISJOINT (gan)" in tex and "JOINT &" in tex and "19-1" in tex
    # RECALL against the fine-tuning baseline of its protocol (disjoint: FINE_TUNING_DISJOINT).
    ft = _block(0, [0.9] + [0.7] * 19 + [None]) + _block(1, [0.9] + [0.2] * 19 + [0.5], list(range(20)), [20])
    _experiment(tmp_path, "FINE_TUNING_DISJOINT", "ADD_ONE_ONE_TIME", "gan", ft)
    rows = {r["config"]: r for r in results.summarize(outputs)}
    table = (tmp_path / "outputs" / "recall_vs_finetuning.md").read_text().splitlines()
    assert len(table) == 3  # header, rule, one RECALL row (JOINT and the baseline have no row of their own)
    difference = rows["DISJOINT"]["miou_all"] - rows["FINE_TUNING_DISJOINT"]["miou_all"]
    # No operative config beside these results files: the runs record no switch values, variant "?".
    assert table[2] == (f"| 19-1 | disjoint | DISJOINT | gan | ? | 1.0.0.2 | {rows['DISJOINT']['miou_all']:.1f} | "
                        f"{rows['FINE_TUNING_DISJOINT']['miou_all']:.1f} | {difference:.1f} | "
                        f"FINE_TUNING_DISJOINT 1.0.0.5 |")
    with open(tmp_path / "outputs" / "summary.csv") as f:
        assert {r["config"]: r["variant"] for r in csv.DictReader(f)} == {
            "DISJOINT": "?", "FINE_TUNING_DISJOINT": "?", "JOINT": "?"}




def test_two_parameter_generations_of_a_config_are_two_rows(tmp_path):
    """The summary tells experiments apart by their descriptions, not by their file names: a second
    generation of parameter indices is a row of its own, named by its indices in the paper-style table."""
    text = _block(0, [0.9] + [0.7] * 19 + [None]) + _block(1, [0.9] + [0.6] * 20, list(range(20)), [20])
    for index in (2, 3):
        _experiment(tmp_path, "DISJOINT", "ADD_ONE_ONE_TIME", "gan", text,
                    f"TrainManager.parameters_incremental_index = {index}")
    rows = results.summarize(str(tmp_path / "outputs"))
    assert sorted(r["parameters"] for r in rows) == ["1.0.0.2", "1.0.0.3"]
    tex = (tmp_path / "outputs" / "summary.tex").read_text()
    assert "DISJOINT (gan) P1.0.0.2 &" in tex and "DISJOINT (gan) P1.0.0.3 &" in tex


def test_malformed_experiments_are_skipped_never_shifted(tmp_path):
    """A description or results file that does not add up is reported and skipped: unreadable JSON, an unknown
    setup, a class list of another length than the experiment's classes, a folder named like a description."""
    good = _block(0, [0.9] * 21)
    last = _block(1, [0.8] * 21, list(range(20)), [20])
    cases = {"JOINT": good, "FINE_TUNING": _block(0, [0.9] * 20 + [None]) + last}
    for config, text in cases.items():
        _experiment(tmp_path, config, "JOINT" if config == "JOINT" else "ADD_ONE_ONE_TIME", None, text)
    outputs = tmp_path / "outputs"
    assert len(results.read_experiments(str(outputs))) == 2
    joint = results.description_path(str(outputs / "JOINT (T7_P3.0.0.0).txt"))
    with open(joint, "w") as f:
        f.write("{not json")
    ft = results.description_path(str(outputs / "FINE_TUNING (T0_P1.0.0.4).txt"))
    with open(ft) as f:
        doc = json.load(f)
    for bad in ({"test_type": "ADD_NINE"}, {"n_classes": 19}):
        with open(ft, "w") as f:
            json.dump(dict(doc, **bad), f)
        assert results.read_experiments(str(outputs)) == []
    with open(ft, "w") as f:
        json.dump(doc, f)
    with open(outputs / "FINE_TUNING (T0_P1.0.0.4).txt", "w") as f:  # its last block with 22 classes
        f.write(_block(0, [0.9] * 20 + [None]) + _block(1, [0.8] * 22, list(range(20)), [20]))
    assert results.read_experiments(str(outputs)) == []
    os.makedirs(outputs / "folder.json")
    assert results.read_experiments(str(outputs)) == []


def test_a_nested_list_is_a_named_error(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text(_block(0, [0.5, 0.5]).replace("['0.500', '0.500']", "[['0.500'], '0.500']", 1))
    with pytest.raises(ValueError, match=r"r.txt: line \d+: expected numbers or None"):
        results.parse_results_file(str(path))


# ------------------------------------------------------------------------------------- the paper's numbers

def _operative_config(protocol="disjoint", **changed):
    """The ORIGINAL_BEHAVIOURS switches and the incremental protocol as gin's operative config writes them
    (defaults, but `changed`, e.g. replay_label_input="mean_subtracted")."""
    values = {name: value for name, value in results.ORIGINAL_BEHAVIOURS.items()}
    values["TrainManager.dataset_type_incremental"] = protocol
    for key, value in changed.items():
        values[next(n for n in values if n.endswith("." + key))] = value
    lines = ["# Parameters for Training:", "# " + "=" * 78]
    lines += [f"{name} = {value!r}" for name, value in sorted(values.items())]
    return "\n".join(lines) + "\n"


PAPER_HEADER = "method,replay_source,test_type,setup,protocol,miou_old,miou_new,miou_all,source\n"


def test_the_shipped_paper_file_parses_and_names_its_sources():
    path = os.path.join(ROOT, "docs", "paper_results.csv")
    rows = results.read_paper_results(path)
    names = [name for name, _ in TrainManager.TESTS]
    for row in rows:
        assert row["test_type"] in names and row["protocol"] in results.PAPER_PROTOCOLS
        assert row["replay_source"] in results.PAPER_REPLAY_SOURCES and row["source"].strip()
        assert any(row[c] is not None for c in ("miou_old", "miou_new", "miou_all"))
    with open(path) as f:
        assert "arxiv.org/abs/2108.03673" in f.read()  # the file names the paper it copies


def test_original_behaviours_are_the_defaults_and_the_readme_switches():
    """ORIGINAL_BEHAVIOURS (behaviours.DEFAULTS: one owner) holds each switch's default, and exactly the run switches
    of the README table."""
    import inspect
    import re
    import behaviours  # pylint: disable=import-outside-toplevel
    import training  # pylint: disable=import-outside-toplevel
    assert results.ORIGINAL_BEHAVIOURS is behaviours.DEFAULTS
    signatures = {"Training": inspect.signature(training.Training.__init__),
                  "TrainManager": inspect.signature(TrainManager.__init__)}
    for name, original in results.ORIGINAL_BEHAVIOURS.items():
        cls, argument = name.split(".")
        assert signatures[cls].parameters[argument].default == original, name
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Behaviours of the original")[1].split("\n## ")[0]
    assert set(re.findall(r"`((?:Training|TrainManager)\.\w+) =", section)) == set(results.ORIGINAL_BEHAVIOURS)


def test_paper_comparison_beside_each_run(tmp_path):
    """Runs are matched with the paper's rows by method, replay source, setup and protocol; the differences are
    ours - paper; a switch set otherwise is named; JOINT is split by each joint row's setup."""
    outputs = tmp_path / "outputs"
    final = [0.9] + [0.6] * 19 + [0.3]
    text = _block(0, [0.9] + [0.7] * 19 + [None]) + _block(1, final, list(range(20)), [20])
    _experiment(tmp_path, "DISJOINT", "ADD_ONE_ONE_TIME", "gan", text,
                      gin_text=_operative_config(replay_label_input="mean_subtracted", train_batch_norm=False))
    web = _experiment(tmp_path, "DISJOINT", "ADD_ONE_ONE_TIME", "flickr", text, gin_text=_operative_config())
    ft = _experiment(tmp_path, "FINE_TUNING_DISJOINT", "ADD_ONE_ONE_TIME", "gan", text)  # no operative config
    joint = _experiment(tmp_path, "JOINT", "JOINT", None, _block(0, [0.9] + [0.8] * 10 + [0.5] * 10))
    # A description written before protocol and behaviours were recorded: both come from its `.gin`.
    with open(results.description_path(web)) as f:
        doc = json.load(f)
    del doc["protocol"], doc["behaviours"]
    with open(results.description_path(web), "w") as f:
        json.dump(doc, f)
    paper = tmp_path / "paper.csv"
    paper.write_text("# a comment\n" + PAPER_HEADER +
                     "RECALL,gan,ADD_ONE_ONE_TIME,19-1,disjoint,60.0,35.5,58.0,T1\n"
                     "RECALL,web,ADD_ONE_ONE_TIME,19-1,disjoint,61.0,,59.0,T1\n"
                     "RECALL,gan,ADD_ONE_ONE_TIME,19-1,overlapped,1,2,3,T2\n"  # no overlapped run: no line
                     "fine-tuning,none,ADD_ONE_ONE_TIME,19-1,disjoint,5.0,30.0,6.0,T1\n"
                     "joint,none,ADD_ONE_ONE_TIME,19-1,disjoint,80.0,50.0,78.0,T1\n"
                     "joint,none,ADD_FIVE_ONE_TIME,15-5,disjoint,79.0,51.0,72.0,T1\n"
                     "MiB,none,ADD_ONE_ONE_TIME,19-1,disjoint,70.0,20.0,67.0,T1\n")
    results.summarize(str(outputs))
    assert not (outputs / "paper_comparison.md").exists()  # only when asked
    rows = {r["config"]: r for r in results.summarize(str(outputs), paper=str(paper))}
    with open(outputs / "paper_comparison.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["method"], r["replay_source"], r["setup"], r["config"]) for r in table] == [
        ("RECALL", "web", "19-1", "DISJOINT"), ("RECALL", "gan", "19-1", "DISJOINT"),  # by results file
        ("fine-tuning", "none", "19-1", "FINE_TUNING_DISJOINT"), ("joint", "none", "19-1", "JOINT"),
        ("joint", "none", "15-5", "JOINT")]
    by = {(r["method"], r["replay_source"], r["setup"]): r for r in table}
    recall = rows["DISJOINT"]
    for (method, source, setup), paper_numbers in {("RECALL", "gan", "19-1"): (60.0, 35.5, 58.0),
                                                    ("RECALL", "web", "19-1"): (61.0, None, 59.0),
                                                    ("fine-tuning", "none", "19-1"): (5.0, 30.0, 6.0)}.items():
        r = by[(method, source, setup)]
        for group, number in zip(("old", "new", "all"), paper_numbers):
            assert r[f"miou_{group}"] == f"{recall['miou_' + group]:.1f}"  # the same results text for all three
            assert r[f"paper_{group}"] == ("" if number is None else f"{number:.1f}")
            assert r[f"diff_{group}"] == ("" if number is None else f"{recall['miou_' + group] - number:.1f}")
    assert by[("RECALL", "gan", "19-1")]["changed_behaviours"] == (
        "Training.train_batch_norm = False; Training.replay_label_input = 'mean_subtracted'")
    assert by[("RECALL", "web", "19-1")]["changed_behaviours"] == ""  # the original's, read from the .gin
    assert by[("fine-tuning", "none", "19-1")]["changed_behaviours"] == "?"  # nothing records them
    iou = results.parse_results_file(joint)[0]["class_iou"]
    old, new, all_ = (100 * sum(iou[1:16]) / 15, 100 * sum(iou[16:21]) / 5, 100 * sum(iou[1:21]) / 20)
    assert by[("joint", "none", "15-5")]["diff_old"] == f"{old - 79.0:.1f}"
    assert by[("joint", "none", "15-5")]["diff_new"] == f"{new - 51.0:.1f}"
    assert by[("joint", "none", "15-5")]["diff_all"] == f"{all_ - 72.0:.1f}"
    assert by[("joint", "none", "19-1")]["miou_new"] == f"{100 * iou[20]:.1f}"
    markdown = (outputs / "paper_comparison.md").read_text()
    assert markdown.count("\n| RECALL |") == 2 and "mean_subtracted" in markdown
    # A run whose description and config say nothing of its protocol is not compared (and not guessed).
    os.remove(results.gin_path(web))
    results.summarize(str(outputs), paper=str(paper))
    with open(outputs / "paper_comparison.csv") as f:
        assert [r["replay_source"] for r in csv.DictReader(f) if r["method"] == "RECALL"] == ["gan"]
    assert ft  # (its description has the protocol of its manager: matched above)


@pytest.mark.parametrize("body, message", [
    ("RECALL,gan,ADD_ONE_ONE_TIME,19-1,disjoint,60,x35,58,T1", r"line 2: miou_new: expected a number, got 'x35'"),
    ("RECALL,gan,ADD_NINE,19-1,disjoint,60,35,58,T1", r"line 2: unknown test_type 'ADD_NINE'"),
    ("RECALL,gan,ADD_ONE_ONE_TIME,19-1,diagonal,60,35,58,T1", r"line 2: unknown protocol 'diagonal'"),
    ("RECALL,gan,ADD_FIVE_TWO_TIMES,10-5,disjoint,60,35,58,T1", r"line 2: setup '10-5' .* expected '10-5-5'"),
    ("RECALL,flickr,ADD_ONE_ONE_TIME,19-1,disjoint,60,35,58,T1", r"line 2: unknown replay_source 'flickr'"),
    ("RECALL,none,ADD_ONE_ONE_TIME,19-1,disjoint,60,35,58,T1", r"line 2: RECALL with replay_source 'none'"),
    ("RECALL,gan,ADD_ONE_ONE_TIME,19-1,disjoint,60,35,158,T1", r"line 2: miou_all = '158': expected a percentage"),
    ("RECALL,gan,ADD_ONE_ONE_TIME,19-1,disjoint,,,,T1", r"line 2: no number"),
    ("RECALL,gan,ADD_ONE_ONE_TIME,19-1,disjoint,60,35,58,", r"line 2: empty source"),
    ("RECALL,gan,ADD_ONE_ONE_TIME,19-1,disjoint,60,35,T1", r"line 2: 8 fields, expected 9"),
    ("MiB,none,ADD_ONE_ONE_TIME,19-1,disjoint,60,35,58,T1\nMiB,none,ADD_ONE_ONE_TIME,19-1,disjoint,1,2,3,T2",
     r"line 3: a second row for .*MiB.* \(the first is line 2\)"),
])
def test_bad_paper_files_are_named_errors(tmp_path, body, message):
    path = tmp_path / "paper.csv"
    path.write_text(PAPER_HEADER + body + "\n")
    with pytest.raises(ValueError, match=r"paper\.csv: " + message):
        results.read_paper_results(str(path))


def test_a_paper_file_without_its_columns_fails_before_anything_is_written(tmp_path):
    path = tmp_path / "paper.csv"
    path.write_text("# numbers\nmethod,replay_source,test_type,setup,miou_old,miou_new,miou_all,source\n")
    with pytest.raises(ValueError, match=r"paper\.csv: line 2: header .* lacks \['protocol'\]"):
        results.read_paper_results(str(path))
    _experiment(tmp_path, "JOINT", "JOINT", None, _block(0, [0.9] * 21))
    with pytest.raises(ValueError, match="lacks"):
        results.summarize(str(tmp_path / "outputs"), paper=str(path))
    assert not (tmp_path / "outputs" / "summary.csv").exists()
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        results.read_paper_results(str(tmp_path / "nothere.csv"))
    (tmp_path / "empty.csv").write_text("# only comments\n")
    with pytest.raises(ValueError, match="empty.csv: no header line"):
        results.read_paper_results(str(tmp_path / "empty.csv"))


def test_recall_beside_the_fields_baselines(tmp_path):
    """A field's baseline (TrainManager.method) is named in its description and its row; recall_vs_baselines.md
    sets RECALL beside fine-tuning and every baseline of the same setup and protocol, with RECALL's best minus the
    best other. The baselines are bound on DISJOINT.gin here (their configs need the methods' gin names)."""
    outputs = str(tmp_path / "outputs")
    first = _block(0, [0.9] + [0.7] * 19 + [None])
    finals = {"DISJOINT": 0.5, "FINE_TUNING_DISJOINT": 0.3, "LWF_DISJOINT": 0.4, "MIB_DISJOINT": 0.6}
    baseline = ["TrainManager.interleave_ratio_old = 0", "TrainManager.mix_labels = False"]
    bindings = {"DISJOINT": [], "FINE_TUNING_DISJOINT": [],
                "LWF_DISJOINT": baseline + ['TrainManager.method = "lwf"',
                                            "TrainManager.parameters_incremental_index = 7"],
                "MIB_DISJOINT": baseline + ['TrainManager.method = "mib"',
                                            "TrainManager.train_encoder_incremental = True",
                                            "TrainManager.parameters_incremental_index = 10"]}
    for name, value in finals.items():
        text = first + _block(1, [0.9] + [value] * 20, list(range(20)), [20])
        config = name if name in ("DISJOINT", "FINE_TUNING_DISJOINT") else "DISJOINT"
        path = _experiment(tmp_path, config, "ADD_ONE_ONE_TIME", "gan", text,
                           f'TrainManager.test_name = "{name}"', *bindings[name])
        with open(results.description_path(path)) as f:
            doc = json.load(f)
        expected = {"LWF_DISJOINT": ("lwf", False), "MIB_DISJOINT": ("mib", True)}.get(name)
        assert (doc.get("method"), doc.get("train_encoder_incremental")) == (expected or (None, None))
    rows = {r["config"]: r for r in results.summarize(outputs)}
    assert {c: r["method"] for c, r in rows.items()} == {"DISJOINT": "RECALL", "FINE_TUNING_DISJOINT": "fine-tuning",
                                                         "LWF_DISJOINT": "LwF", "MIB_DISJOINT": "MiB"}
    table = (tmp_path / "outputs" / "recall_vs_baselines.md").read_text().splitlines()
    assert table[0] == "| setup | protocol | RECALL gan | fine-tuning | LwF | MiB | RECALL - best other |"
    cells = [f"{rows[c]['miou_all']:.1f}" for c in finals]
    gap = rows["DISJOINT"]["miou_all"] - rows["MIB_DISJOINT"]["miou_all"]
    assert table[2:] == [f"| 19-1 | disjoint | {' | '.join(cells)} | {gap:.1f} |"]
    assert results.method_name("ilt", False, "ADD_ONE_FIVE_TIMES", "none") == "ILT (frozen encoder)"
    assert results.method_name("lwf", True, "ADD_ONE_FIVE_TIMES", "none") == "LwF (encoder trained)"
    assert results.recall_vs_baselines([rows["DISJOINT"]]).startswith("No run of a field's baseline")


# ------------------------------------------------------------------------------------------------- variants

MEAN_SUBTRACTED = 'Training.replay_label_input = "mean_subtracted"'


def _final(value):
    """A 19-1 results text whose last step has IoU `value` on every class but the background."""
    return _block(0, [0.9] + [0.7] * 19 + [None]) + _block(1, [0.9] + [value] * 20, list(range(20)), [20])


def _table(path):
    """The body of a markdown table file: a list of rows, each a list of its cells (stripped)."""
    lines = path.read_text().splitlines()
    return [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]


def test_variant_label_is_derived_from_the_switches():
    defaults = dict(results.ORIGINAL_BEHAVIOURS)
    assert results.variant_label(defaults) == "original" and results.run_variant(defaults) == "original"
    assert results.variant_label(None) == "?" and results.run_variant(None) == "?"
    paper = dict(defaults, **{"Training.replay_label_input": "mean_subtracted"})
    assert results.variant_label(paper) == "mean-subtracted"
    assert results.run_variant(paper) == "Training.replay_label_input = 'mean_subtracted'"
    two = dict(defaults, **{"Training.train_batch_norm": False, "Training.momentum_rule": "keras"})
    assert results.variant_label(two) == "no train_batch_norm, keras"
    assert results.variant_label({"TrainManager.mixed_labels_per_experiment": True}) == "mixed_labels_per_experiment"


def test_a_switch_every_run_sets_is_named_once_not_in_every_variant(tmp_path):
    """The embedded benchmark sets TrainManager.mixed_labels_per_experiment for every run: the summary's variant
    column keeps every switch, but the tables and plots name the variants by their other switches ("original",
    "mean-subtracted") and say once, above each table, what every run sets. One run without it (a folder that mixes
    the two): nothing is left out."""
    import training  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (registers Training.*)
    mixed = "TrainManager.mixed_labels_per_experiment = True"
    outputs = tmp_path / "outputs"
    for config, value, bindings, changed in [
            ("DISJOINT", 0.3, [mixed], {}),
            ("DISJOINT", 0.6, [mixed, MEAN_SUBTRACTED], {"replay_label_input": "mean_subtracted"}),
            ("FINE_TUNING_DISJOINT", 0.4, [mixed], {})]:
        _experiment(tmp_path, config, "ADD_ONE_ONE_TIME", "gan", _final(value), *bindings,
                    gin_text=_operative_config("disjoint", mixed_labels_per_experiment=True, **changed))
    _experiment(tmp_path, "JOINT", "JOINT", None, _block(0, [0.9] + [0.8] * 20), mixed,
                gin_text=_operative_config(mixed_labels_per_experiment=True))
    rows = results.summarize(str(outputs))
    both = "TrainManager.mixed_labels_per_experiment = True"
    assert sorted((r["config"], r["variant_label"], r["variant"]) for r in rows) == [
        ("DISJOINT", "mean-subtracted", "Training.replay_label_input = 'mean_subtracted'; " + both),
        ("DISJOINT", "original", both), ("FINE_TUNING_DISJOINT", "original", both), ("JOINT", "original", both)]
    for name in ("method_setup_table.md", "recall_vs_finetuning.md"):
        lines = (outputs / name).read_text().splitlines()
        assert lines[0].startswith(f"Every run here: {both} ") and lines[1] == "", (name, lines[:2])
        assert "mixed_labels_per_experiment" not in "\n".join(lines[2:]), name
    assert [line.split("|")[1].strip() for line in (outputs / "method_setup_table.md").read_text().splitlines()[4:]] \
        == ["FT (disjoint)", "RECALL disj. gan", "RECALL disj. gan (mean-subtracted)", "JOINT"]
    experiments = results.read_experiments(str(outputs))
    assert sorted(label for label, _ in results.plot_lines(experiments).values()) == [
        "DISJOINT (gan)", "DISJOINT (gan, mean-subtracted)", "FINE_TUNING_DISJOINT (none)", "JOINT (none)"]

    # A run without the switch: no switch is common, each variant says it.
    _experiment(tmp_path, "FINE_TUNING_OVERLAPPED", "ADD_ONE_ONE_TIME", "gan", _final(0.2),
                gin_text=_operative_config("overlapped"))
    rows = results.summarize(str(outputs))
    assert {r["variant_label"] for r in rows} == {"original", "mixed_labels_per_experiment",
                                                  "mean-subtracted, mixed_labels_per_experiment"}
    assert not (outputs / "method_setup_table.md").read_text().startswith("Every run")


def test_two_variants_of_recall_in_every_table(tmp_path):
    """RECALL as the original's code runs it and as the paper describes it (Training.replay_label_input =
    "mean_subtracted", results files with a name suffix) beside one fine-tuning run per protocol: the summary's
    variant column; each RECALL row of both variants paired with the fine-tuning run of its setup and protocol
    (OVERLAPPED, P3.1, with FINE_TUNING_OVERLAPPED, P2.1, which trains its own step 0); a column per variant in
    recall_vs_baselines, a row per variant in the README table, summary.tex and the paper comparison; both
    variants' lines in the plots, told apart."""
    import training  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (registers Training.*)
    outputs = tmp_path / "outputs"
    lwf = ['TrainManager.test_name = "LWF_DISJOINT"', "TrainManager.interleave_ratio_old = 0",
           "TrainManager.mix_labels = False", 'TrainManager.method = "lwf"',
           "TrainManager.parameters_incremental_index = 7"]
    runs = [  # config (gin file), replay source, final IoU, bindings, protocol, changed switches
        ("DISJOINT", "gan", 0.3, [], "disjoint", {}),
        ("DISJOINT", "gan", 0.6, [MEAN_SUBTRACTED], "disjoint", {"replay_label_input": "mean_subtracted"}),
        ("FINE_TUNING_DISJOINT", "gan", 0.4, [], "disjoint", {}),
        ("OVERLAPPED", "gan", 0.2, [], "overlapped", {}),
        ("OVERLAPPED", "gan", 0.55, [MEAN_SUBTRACTED], "overlapped", {"replay_label_input": "mean_subtracted"}),
        ("FINE_TUNING_OVERLAPPED", "gan", 0.45, [], "overlapped", {}),
        ("DISJOINT", "gan", 0.5, lwf, "disjoint", {}),  # a field's baseline: LWF_DISJOINT
    ]
    paths = [_experiment(tmp_path, config, "ADD_ONE_ONE_TIME", source, _final(value), *bindings,
                         gin_text=_operative_config(protocol, **changed))
             for config, source, value, bindings, protocol, changed in runs]
    assert len(set(paths)) == len(paths), f"two runs wrote one results file: {paths}"
    assert os.path.basename(paths[1]) == "DISJOINT (T0_P1.0.0.2_gan)__replay_label_input-mean_subtracted.txt"
    _experiment(tmp_path, "JOINT", "JOINT", None, _block(0, [0.9] + [0.8] * 20), gin_text=_operative_config())
    rows = results.summarize(str(outputs))
    by = {(r["config"], r["variant_label"]): r for r in rows}
    paper_variant = "Training.replay_label_input = 'mean_subtracted'"
    assert {k: r["variant"] for k, r in by.items()} == {
        ("DISJOINT", "original"): "original", ("DISJOINT", "mean-subtracted"): paper_variant,
        ("OVERLAPPED", "original"): "original", ("OVERLAPPED", "mean-subtracted"): paper_variant,
        ("FINE_TUNING_DISJOINT", "original"): "original", ("FINE_TUNING_OVERLAPPED", "original"): "original",
        ("LWF_DISJOINT", "original"): "original", ("JOINT", "original"): "original"}
    with open(outputs / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0])[3:6] == ["replay_source", "variant", "parameters"]
    assert sorted(r["variant"] for r in table if r["config"] == "DISJOINT") == [paper_variant, "original"]

    # RECALL against fine-tuning: both variants, each against its protocol's fine-tuning run.
    miou = {k: r["miou_all"] for k, r in by.items()}
    expected = {("DISJOINT", v): ("FINE_TUNING_DISJOINT", "FINE_TUNING_DISJOINT 1.0.0.5")
                for v in ("original", "mean-subtracted")}
    expected.update({("OVERLAPPED", v): ("FINE_TUNING_OVERLAPPED", "FINE_TUNING_OVERLAPPED 2.1.0.1; its own step 0")
                     for v in ("original", "mean-subtracted")})
    label = {"original": "original", paper_variant: "mean-subtracted"}
    table = _table(outputs / "recall_vs_finetuning.md")
    assert len(table) == 4
    for setup, protocol, config, source, variant, parameters, recall, ft, difference, run in table:
        key = (config, label[variant])
        ft_config, note = expected.pop(key)
        assert (setup, protocol, source, parameters) == ("19-1", config.lower(), "gan", by[key]["parameters"])
        assert (recall, ft, run) == (f"{miou[key]:.1f}", f"{miou[(ft_config, 'original')]:.1f}", note)
        assert difference == f"{miou[key] - miou[(ft_config, 'original')]:.1f}"
    assert not expected

    # Beside the field's baselines: a RECALL column per variant, and a gap per variant.
    header, *body = (outputs / "recall_vs_baselines.md").read_text().splitlines()
    assert header == ("| setup | protocol | RECALL gan | RECALL gan (mean-subtracted) | fine-tuning | LwF | "
                      "RECALL - best other | RECALL (mean-subtracted) - best other |")
    best_other = max(miou[("FINE_TUNING_DISJOINT", "original")], miou[("LWF_DISJOINT", "original")])
    cells = [miou[(c, v)] for c, v in [("DISJOINT", "original"), ("DISJOINT", "mean-subtracted"),
                                       ("FINE_TUNING_DISJOINT", "original"), ("LWF_DISJOINT", "original")]]
    cells += [miou[("DISJOINT", "original")] - best_other, miou[("DISJOINT", "mean-subtracted")] - best_other]
    assert body[1:] == ["| 19-1 | disjoint | " + " | ".join(f"{v:.1f}" for v in cells) + " |"]

    # The README's table: a row per protocol, method and variant; JOINT last.
    table = _table(outputs / "method_setup_table.md")
    assert (outputs / "method_setup_table.md").read_text().startswith("| method | 19-1 |\n")
    assert table == [[name, f"{miou[key]:.1f}"] for name, key in [
        ("FT (disjoint)", ("FINE_TUNING_DISJOINT", "original")), ("RECALL disj. gan", ("DISJOINT", "original")),
        ("RECALL disj. gan (mean-subtracted)", ("DISJOINT", "mean-subtracted")),
        ("FT (overlapped)", ("FINE_TUNING_OVERLAPPED", "original")), ("RECALL ovl. gan", ("OVERLAPPED", "original")),
        ("RECALL ovl. gan (mean-subtracted)", ("OVERLAPPED", "mean-subtracted")), ("JOINT", ("JOINT", "original"))]]

    # The paper's form: a row per variant.
    tex = (outputs / "summary.tex").read_text()
    assert tex.count("\nDISJOINT (gan) &") == 1 and tex.count("\nDISJOINT (gan, mean-subtracted) &") == 1
    assert tex.count("\nOVERLAPPED (gan) &") == 1 and tex.count("\nOVERLAPPED (gan, mean-subtracted) &") == 1

    # Plots: both variants' lines, labelled, of one colour, solid and dotted.
    experiments = results.read_experiments(str(outputs))
    lines = results.plot_lines(experiments)
    original, paper = (lines[p] for p in paths[:2])
    assert (original[0], paper[0]) == ("DISJOINT (gan)", "DISJOINT (gan, mean-subtracted)")
    assert original[1]["color_index"] == paper[1]["color_index"]
    assert (original[1]["linestyle"], paper[1]["linestyle"]) == ("-", ":")
    assert len({style["color_index"] for _, style in lines.values()}) == 6  # DISJOINT, OVERLAPPED, 2 FT, LwF, JOINT
    written = results.plot(experiments, str(tmp_path / "plots"))
    assert written == [str(tmp_path / "plots" / "miou_19-1.png")] and os.path.getsize(written[0]) > 1000
    assert (outputs / "plots" / "miou_19-1.png").stat().st_size > 1000

    # The paper comparison: a row per run, the variant named by the switch it changed.
    paper_file = tmp_path / "paper.csv"
    paper_file.write_text(PAPER_HEADER + "RECALL,gan,ADD_ONE_ONE_TIME,19-1,disjoint,60.0,35.5,58.0,T1\n")
    results.summarize(str(outputs), paper=str(paper_file))
    with open(outputs / "paper_comparison.csv") as f:
        compared = [(r["method"], r["config"], r["miou_all"], r["changed_behaviours"]) for r in csv.DictReader(f)]
    assert compared == [("RECALL", "DISJOINT", f"{miou[('DISJOINT', 'original')]:.1f}", ""),
                        ("RECALL", "DISJOINT", f"{miou[('DISJOINT', 'mean-subtracted')]:.1f}", paper_variant)]

    # Two fine-tuning runs that could pair with DISJOINT: a pair each, the column says which and that it is one of
    # two; the README table names them by config.
    _experiment(tmp_path, "FINE_TUNING_DISJOINT_NO_MIX", "ADD_ONE_ONE_TIME", "gan", _final(0.35),
                gin_text=_operative_config())
    rows = results.summarize(str(outputs))
    table = _table(outputs / "recall_vs_finetuning.md")
    pairs = sorted((r[2], label[r[4]], r[9]) for r in table if r[2] == "DISJOINT")
    assert pairs == [("DISJOINT", v, f"{ft} 1 of 2 candidates".replace(" 1 of", "; 1 of"))
                     for v in ("mean-subtracted", "original")
                     for ft in ("FINE_TUNING_DISJOINT 1.0.0.5", "FINE_TUNING_DISJOINT_NO_MIX 1.0.0.6")]
    names = [r[0] for r in _table(outputs / "method_setup_table.md")]
    assert names[:2] == ["FT (disjoint) [FINE_TUNING_DISJOINT 1.0.0.5]",
                         "FT (disjoint) [FINE_TUNING_DISJOINT_NO_MIX 1.0.0.6]"]


def test_method_setup_table_mean_and_std():
    """The README table from rows of means with their standard deviations (the seed study's): "mean ± std"; a
    cell of one run (no std) holds the mean alone; JOINT's number in every column; setups in the README's order."""
    def row(method, protocol, setup, value, std=None, source="none", config="X", label="original"):
        return dict(method=method, protocol=protocol, setup=setup, miou_all=value, miou_all_std=std,
                    replay_source=source, config=config, parameters="1.0.0.2", variant_label=label)
    rows = [row("RECALL", "sequential", "10-1", 40.04, 2.26, "flickr", "SEQUENTIAL"),
            row("RECALL", "sequential", "19-1", 50.0, math.nan, "flickr", "SEQUENTIAL"),
            row("fine-tuning", "sequential", "10-1", 20.0, 1.0, config="FINE_TUNING"),
            row("joint", None, "joint", 70.0, 0.5, config="JOINT"),
            row("MiB", "disjoint", "10-1", 30.0, 1.0, config="MIB_DISJOINT")]  # not in this table
    assert results.method_setup_table(rows) == (
        "| method | 19-1 | 10-1 |\n|---|---|---|\n"
        "| FT (sequential) |  | 20.0 ± 1.0 |\n"
        "| RECALL seq. web | 50.0 | 40.0 ± 2.3 |\n"
        "| JOINT | 70.0 ± 0.5 | 70.0 ± 0.5 |\n")
    assert "| FT (sequential) |  | 20.0 |" in results.method_setup_table([dict(r, miou_all_std=None) for r in rows])
