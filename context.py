"""What the experiments of one process share (Context) and where an experiment gets the artifacts other experiments
may make too (Store): handed to each training.Training, so a process keeps no module globals but the default
Context. Every file a Context remembers is keyed by its identity (file_identity: path, modification time, size), so
a file rewritten under the same name is read again.
"""
import collections
import contextlib
import os
import time

import numpy as np

import data_loader
from distribute import is_chief, make_strategy
from paths import expected_records


class Context:
    """What the experiments of one process share, handed to each Training (no module globals):

    - progress_bars: tqdm bars on or off (off in the processes of a parallel sweep, whose bars would
      overwrite each other);
    - times: seconds spent in each kind of work over the experiments run with this context (main.py reports
      them);
    - the tf.distribute strategies, one per kind: every experiment gets the same instance (a second
      MultiWorkerMirroredStrategy in a process breaks the collectives, so use one context per process);
    - the tfrecords already checked (check_once) and the validation samples decoded (decoded_samples);
    - the networks whose weights stages load from checkpoints (kept_network, keep), one per architecture, so that
      the experiments of a sweep neither build nor trace a network each, the validations of first steps
      (validated), which every experiment sharing a first step would repeat, and the encoder features of
      validation files (encoded), which every step of a frozen encoder would compute again.
    `Training(manager)` without a context uses the process's default one (default_context()).
    """

    def __init__(self, progress_bars=True):
        self.progress_bars = progress_bars
        self.times = collections.Counter()
        self._strategies = {}
        self._checked = {}
        self._decoded, self._decoded_bytes = {}, 0
        self._networks = collections.OrderedDict()  # key -> (Segmenter, bytes of its variables), oldest use first
        self._validated = {}
        self._encoded = collections.OrderedDict()  # key -> (features, bytes), oldest use first
        self._waited = 0.0

    @contextlib.contextmanager
    def timed(self, kind):
        """Adds the time spent inside the block to times[kind], less the time it waited (add_wait)."""
        start, waited = time.perf_counter(), self._waited
        try:
            yield
        finally:
            self.times[kind] += time.perf_counter() - start - (self._waited - waited)

    def add_wait(self, seconds):
        """Counts `seconds` spent waiting for another process (an artifact it writes, a lock it holds): under
        times["waiting for another process"], and not under the kind of the timed() block around the wait."""
        self._waited += seconds
        self.times["waiting for another process"] += seconds

    def strategy(self, name, peer_timeout=600):
        """The strategy called `name` (see distribute.make_strategy), made once."""
        if name not in self._strategies:
            self._strategies[name] = make_strategy(name, peer_timeout)
        return self._strategies[name]

    def chief_process(self):
        """False in a worker process of a multi-worker run that is not the chief (distribute.is_chief): such a
        process trains but writes nothing of its own, not even the sweep's summary."""
        strategy = self._strategies.get("multi_worker")
        return strategy is None or is_chief(strategy)

    def check_once(self, path, n_classes, require_labels=True, allow_empty=False):
        """Checks every record of a tfrecord once (and again when the file changes), so that a bad record
        fails with its file and index before training instead of deep inside tf.data. Returns its count."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"tfrecord not found: {path} (prepare the data with prepare_data.py, or "
                                    f"make the replay with gan/generate_gan.py or flickr/download_flickr.py)")
        key = file_identity(path)
        if key not in self._checked:
            count = data_loader.check_tfrecord(path, n_classes, require_labels)
            if count == 0 and not allow_empty:
                raise ValueError(f"tfrecord {path} holds no record")
            expected = expected_records(path)  # a file cut at a record boundary reads cleanly
            if expected is not None and count != expected:
                raise ValueError(f"tfrecord {path} holds {count} records, but its split list (data/splits/) "
                                 f"names {expected} images: the file is incomplete or stale; delete it and run "
                                 f"prepare_data.py again")
            self._checked[key] = count
        return self._checked[key]

    def note_written(self, path, count):
        """Records that this process has just written `count` records to the tfrecord at `path` (labelled replay,
        mixed labels: made from checked files, class ids the network predicted), so check_once takes them as
        checked instead of reading them back."""
        self._checked[file_identity(path)] = count

    def decoded_samples(self, path, n_classes):
        """The samples of the labelled tfrecord at `path`, as a list of (image uint8 [H, W, 3], label uint8 [H, W]),
        in file order (data_loader mode "validation+", the label values checked against n_classes). Decoded once
        per process while the samples kept stay under DECODED_BUDGET_BYTES (the embedded benchmark's validation
        images), else decoded anew at each call (real VOC's)."""
        key = (file_identity(path), n_classes)
        if key in self._decoded:
            return self._decoded[key]
        samples = [(s["rgb_input"], s["label"]) for _, s in data_loader.read_samples(
            path, "validation+", dataset_mean=(0.0, 0.0, 0.0), n_classes=n_classes)]
        size = sum(image.nbytes + label.nbytes for image, label in samples)
        if self._decoded_bytes + size <= DECODED_BUDGET_BYTES:
            self._decoded[key] = samples
            self._decoded_bytes += size
        return samples

    def validated(self, key, compute):
        """(loss, confusion matrix) of the validation `key`, computed by compute() once per process: a first step's
        network validated by each experiment that shares it (Training._run_validation)."""
        if key not in self._validated:
            self._validated[key] = compute()
        loss, cm = self._validated[key]
        return loss, cm.copy()

    def encoded(self, key, compute):
        """The encoder features `key` names (evaluation._encoded_batches: an encoder checkpoint file, a validation
        file, the batching): what compute() returns (a list of (features, labels) batches), computed once per process
        while the arrays kept stay under ENCODED_BUDGET_BYTES (the least recently used dropped first)."""
        entry = self._encoded.pop(key, None)
        if entry is None:
            features = compute()
            entry = (features, sum(int(np.prod(a.shape)) * np.dtype(getattr(a.dtype, "as_numpy_dtype", a.dtype)).itemsize
                                   for batch in features for a in (batch if isinstance(batch, tuple) else (batch,))))
        self._encoded[key] = entry  # the most recently used
        while len(self._encoded) > 1 and sum(size for _, size in self._encoded.values()) > ENCODED_BUDGET_BYTES:
            self._encoded.popitem(last=False)
        return entry[0]

    def kept_network(self, key):
        """The process's network of architecture `key` (Training._network_key) kept by keep(), or None. Its `holds`
        says which checkpoint files its weights equal (Training._load reads only the others), None while they
        differ from every file (a network in training)."""
        entry = self._networks.pop(key, None)
        if entry is None:
            return None
        self._networks[key] = entry  # the most recently used
        return entry[0]

    def keep(self, key, seg):
        """Keeps `seg` (its `holds` set) as the process's network of architecture `key`, with the steps and
        predictions traced for it, while the kept networks' variables stay under NETWORK_BUDGET_BYTES (the least
        recently used dropped first: every embedded network, a few ResNet-101s)."""
        self._networks.pop(key, None)
        self._networks[key] = (seg, sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                                        for v in seg.encoder.variables + seg.decoder.variables))
        while len(self._networks) > 1 and sum(size for _, size in self._networks.values()) > NETWORK_BUDGET_BYTES:
            self._networks.popitem(last=False)


# Networks a process keeps (Context.kept_network): the embedded benchmark's take 4 MB each; ResNet-101's about 180 MB.
NETWORK_BUDGET_BYTES = 1024 * 2 ** 20

# Decoded samples a process keeps (Context.decoded_samples): the embedded benchmark's 400 validation images of
# 64x64 take 6.6 MB; real VOC's 1449 (about 0.8 GB) are decoded at each validation, as before.
DECODED_BUDGET_BYTES = 256 * 2 ** 20

# Encoder features of validation files a process keeps (Context.encoded): the embedded benchmark's 400 images take
# 52 MB per encoder and setup (8 x 8 x 512 floats each); files above evaluation.ENCODED_FILE_BYTES are never kept.
ENCODED_BUDGET_BYTES = 1024 * 2 ** 20

_DEFAULT_CONTEXT = []  # the process's default Context, made on first use


def default_context():
    """The Context of `Training(manager)` calls that pass none: one per process."""
    if not _DEFAULT_CONTEXT:
        _DEFAULT_CONTEXT.append(Context())
    return _DEFAULT_CONTEXT[0]


class Store:
    """Where a Training gets the artifacts that other experiments may make too (step 0, helpers, labelled replay,
    mixed labels): ensure(path, build). This one, for an experiment alone, builds what is missing; a parallel
    sweep hands each experiment its own (sweep.SweepStore), which first waits while the experiment of the sweep
    that writes the artifact has not."""

    def ensure(self, path, build, exists=os.path.exists):
        """Makes the artifact at `path` with build() unless exists(path). Returns True when build() ran, False
        when the artifact was there (the caller reuses it)."""
        if exists(path):
            return False
        build()
        return True


def file_identity(path):
    """(path, modification time in ns, size) of a file; (path, None, None) when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path, None, None
    return path, st.st_mtime_ns, st.st_size
