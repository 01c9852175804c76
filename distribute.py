"""Training on several devices or machines (README "Scaling out"): the tf.distribute strategies that
Training.distribute names, TF_CONFIG's check, which worker writes (the chief) and the scratch folder of the others.
"""
import copy
import faulthandler
import json
import os
import shutil
import tempfile
import weakref

import tensorflow as tf
from absl import logging

import artifacts

STRATEGIES = ("default", "mirrored", "multi_worker")  # Training.distribute (make_strategy)


def make_strategy(name, peer_timeout=600):
    """A new tf.distribute strategy called `name`: "default", "mirrored" or "multi_worker" (from TF_CONFIG).

    A multi-worker strategy waits in its constructor until every worker of TF_CONFIG has started, and
    TensorFlow neither bounds that wait nor lets a Python thread, a signal handler or SIGTERM end it (the
    constructor holds the interpreter). So faulthandler's watchdog, a C thread, ends the process after
    `peer_timeout` seconds: "Timeout" and the stack on stderr, exit status 1, after the log line that says
    what it waits for."""
    if name == "default":
        return tf.distribute.get_strategy()
    makers = {"mirrored": tf.distribute.MirroredStrategy, "multi_worker": tf.distribute.MultiWorkerMirroredStrategy}
    if name not in makers:
        raise ValueError(f"Training.distribute: unknown strategy {name!r}; expected 'default', 'mirrored' or "
                         f"'multi_worker'.")
    if name != "multi_worker":
        return makers[name]()
    check_tf_config(os.environ.get("TF_CONFIG"))
    logging.warning("multi-worker: waiting up to %s s (Training.peer_timeout) for every worker of TF_CONFIG %s "
                    "to start; if one does not, this process ends with a 'Timeout' traceback (exit status 1)",
                    peer_timeout, os.environ.get("TF_CONFIG"))
    faulthandler.dump_traceback_later(peer_timeout, exit=True)
    try:
        return makers[name]()
    finally:
        faulthandler.cancel_dump_traceback_later()


def check_tf_config(text):
    """Raises ValueError, naming the fault, unless `text` (the TF_CONFIG variable; None: unset, a single
    worker) is the JSON of a cluster of "host:port" lists and a task in it."""
    if text is None:
        return
    example = '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}'
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not JSON ({e}): {text!r}; expected e.g. {example}") from None
    cluster = doc.get("cluster") if isinstance(doc, dict) else None
    task = doc.get("task") if isinstance(doc, dict) else None
    if not (isinstance(cluster, dict) and cluster and all(
            isinstance(v, list) and v and all(isinstance(a, str) and ":" in a for a in v) for v in cluster.values())):
        raise ValueError(f"TF_CONFIG: 'cluster' must map each task type to a non-empty list of \"host:port\" "
                         f"addresses, got {cluster!r}; expected e.g. {example}")
    if not (isinstance(task, dict) and task.get("type") in cluster and isinstance(task.get("index"), int)
            and 0 <= task["index"] < len(cluster[task["type"]])):
        raise ValueError(f"TF_CONFIG: 'task' must name a type of the cluster {sorted(cluster)} and an index "
                         f"within its list, got {task!r}")


def is_chief(strategy):
    """True on the worker that writes the experiment's artifacts: the "chief" task, or worker 0 when the
    cluster has no chief (always True without multi-worker training)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (resolver.task_type == "worker" and resolver.task_id == 0
                                                     and "chief" not in resolver.cluster_spec().as_dict())


def detach(*paths):
    """Replaces each of `paths` that is a link into the chief's folder (worker_view) by a copy of what it holds now,
    so that a non-chief worker checks and appends to its own copy of a results file: through the link it would see
    the chief's appends land between its own check and append (a step it is about to write already there)."""
    for path in paths:
        if os.path.islink(path):
            with open(path, "rb") as f:
                artifacts.write_bytes(path, f.read())  # a temporary name renamed over the link


def writer_view(manager, strategy):
    """The TrainManager a worker of `strategy` writes through: `manager` itself on the chief (is_chief), a
    worker_view of it on the others."""
    return manager if is_chief(strategy) else worker_view(manager, strategy.cluster_resolver.task_id)


def worker_view(manager, task_id):
    """A copy of `manager` for a non-chief worker: its base folder is a new scratch folder holding links to
    every file of the real one's checkpoints/, data/ and outputs/ (no temporaries, debug images or
    TensorBoard logs). The worker reads the same inputs and finished stages, and its writes (always to a
    temporary name, then renamed) replace links in the scratch folder, never the real files. The scratch
    folder is deleted when the process ends."""
    scratch = tempfile.mkdtemp(prefix=f"recall-worker{task_id}-")
    view = copy.copy(manager)
    view.base_folder_path = scratch
    for folder in ("checkpoints", "data", "outputs"):
        source = os.path.join(os.path.abspath(manager.base_folder_path), folder)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(scratch, folder), copy_function=os.symlink,
                            ignore=shutil.ignore_patterns(*artifacts.IGNORE_TEMPORARIES, "debug", "tensorboard"))
    weakref.finalize(view, shutil.rmtree, scratch, ignore_errors=True)
    logging.info("worker %s: writes go to the scratch folder %s (the chief writes the artifacts)", task_id,
                 scratch)
    return view
