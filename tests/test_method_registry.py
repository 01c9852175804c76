"""The methods' registry (methods/__init__.py): a method defined and registered in one place, with its two configs,
is a TrainManager.method, one of main's baseline configs, runs through a tiny sweep and is named in the summary."""
import json
import os
import subprocess
import sys

import gin
import pytest
import tensorflow as tf

import losses
import main
import methods
import results
import sweep
import train_manager
from conftest import TINY_BINDINGS
from train_manager import TrainManager


@gin.configurable("dummy")
class Dummy(methods.Method):
    """Cross-entropy plus a zero term (zero_weight times the previous network's mean logit), prepared by a hook that
    notes every step it sees."""
    name = "dummy"
    title = "Dummy"
    prepared = []

    def __init__(self, zero_weight=0.0):
        self.zero_weight = float(zero_weight)

    def before_step(self, step):
        Dummy.prepared.append((step.index, step.n_old, step.n_new, step.previous is not None))
        return super().before_step(step)

    def losses(self, current, previous, targets, step):
        ce = losses.cross_entropy(current["logits"], targets)
        zero = self.zero_weight * tf.reduce_mean(previous["logits"])
        return {"total": ce + zero, "ce": ce, "zero": zero}


# Its two configs: the protocol's base and what is the method's own.
CONFIG = """include "bases/BASELINE_{protocol}.gin"
TrainManager.test_name = "DUMMY_{protocol}"
TrainManager.parameters_incremental_index = 12
TrainManager.method = "dummy"
TrainManager.train_encoder_incremental = False
dummy.zero_weight = 0.0
"""


@pytest.fixture
def dummy(tmp_path):
    """Dummy registered, and a config folder holding its two configs only."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for protocol in ("DISJOINT", "OVERLAPPED"):
        (config_dir / f"DUMMY_{protocol}.gin").write_text(CONFIG.format(protocol=protocol))
    methods.register(Dummy)
    Dummy.prepared.clear()
    yield str(config_dir)
    methods.unregister("dummy")


def test_the_registry_names_every_method_without_tensorflow():
    """Each module of methods/ is a method, named without importing it: the planner's modules stay TensorFlow-free."""
    code = "import sys, methods; print(methods.names(), methods.baselines(), 'tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split("\n")[0] == ("['recall', 'ilt', 'lwf', 'mib', 'plop'] ['ilt', 'lwf', 'mib', 'plop'] "
                                          "False")
    for name in methods.names():
        method = methods.get(name)
        assert method.name == name and method.title
    assert methods.get("recall").title == "RECALL" and not methods.get("recall").needs_previous
    with pytest.raises(ValueError, match=r"unknown method 'ewc'; expected one of \['recall', 'ilt'"):
        methods.get("ewc")


def test_a_registered_method_is_everywhere_a_method_is(dummy):
    assert methods.names() == ["recall", "dummy", "ilt", "lwf", "mib", "plop"] and "dummy" in methods.baselines()
    with pytest.raises(ValueError, match="registered already"):
        methods.register(type("Other", (methods.Method,), {"name": "dummy", "title": "Other"}))
    # TrainManager takes it; its weights belong to the incremental group.
    gin.clear_config()
    gin.parse_config_file(os.path.join(dummy, "DUMMY_DISJOINT.gin"))
    m = TrainManager(test_type="ADD_ONE_ONE_TIME", replay_source="gan")
    assert (m.incremental.method, m.get_validation_file_name()) == ("dummy", "DUMMY_DISJOINT (T0_P1.0.0.12_gan)")
    assert train_manager.index_of("dummy.zero_weight") == "TrainManager.parameters_incremental_index"
    gin.clear_config()
    # main's baseline configs: those of every baseline whose configs are in the folder.
    assert main.method_configs(dummy) == ["DUMMY_DISJOINT", "DUMMY_OVERLAPPED"]
    assert main.method_configs() == main.METHOD_CONFIGS  # the project's folder has no DUMMY_*
    # The summary names it by its title, and a method nobody knows by its TrainManager.method name.
    assert results.method_name("dummy", False, "ADD_ONE_ONE_TIME", "none") == "Dummy"
    assert results.method_name("dummy", True, "ADD_ONE_ONE_TIME", "none") == "Dummy (encoder trained)"
    methods.unregister("dummy")
    assert results.method_name("dummy", False, "ADD_ONE_ONE_TIME", "none") == "dummy"
    with pytest.raises(ValueError, match="TrainManager.method: unknown method 'dummy'"):
        gin.parse_config_file(os.path.join(dummy, "DUMMY_DISJOINT.gin"))
        TrainManager(test_type="ADD_ONE_ONE_TIME", replay_source="gan")
    gin.clear_config()


def test_a_registered_method_runs_through_a_sweep_and_the_summary(dummy, copy_base):
    runs = sweep.plan(main.method_configs(dummy), ["ADD_FIVE_TWO_TIMES"], ["gan"], dummy)
    assert runs == [(c, "ADD_FIVE_TWO_TIMES", "gan", ()) for c in ("DUMMY_DISJOINT", "DUMMY_OVERLAPPED")]
    records = sweep.experiments(runs[:1], dummy, params=TINY_BINDINGS + [f'TrainManager.base_folder_path = "{copy_base}"'])
    assert [r.error for r in records] == [None]
    assert sweep.run(records, jobs=1) == []
    # Its hook prepared both incremental steps of 10-5-5, with the previous network its loss reads.
    assert Dummy.prepared == [(1, 11, 5, True), (2, 16, 5, True)]
    outputs = copy_base / "outputs"
    name = "DUMMY_DISJOINT (T2_P1.0.0.12_gan)"
    operative = (outputs / f"{name}.gin").read_text()
    assert "TrainManager.method = 'dummy'" in operative and "dummy.zero_weight = 0.0" in operative
    with open(copy_base / "checkpoints" / "decoders" / "P1.0.0.12_T2_S2_gan.made.json") as f:
        assert json.load(f)["made_by"]["dummy.zero_weight"] == 0.0
    assert [b["step"] for b in results.parse_results_file(str(outputs / f"{name}.txt"))] == [0, 1, 2]
    (row,) = results.summarize(str(outputs))
    assert (row["config"], row["method"], row["replay_source"]) == ("DUMMY_DISJOINT", "Dummy", "none")
    assert "| Dummy |" in (outputs / "recall_vs_baselines.md").read_text().splitlines()[0]
