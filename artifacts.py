"""The on-disk conventions: how an artifact is written so that existing means complete.

Every artifact (checkpoint, tfrecord, split list, results file, image, SavedModel folder) is written to a
temporary name beside its final one, `<final>.tmp-<pid>-<n>`, and renamed when complete. While a writer
works it holds an exclusive lock on `<temporary>.lock`; a temporary whose lock nobody holds was left by a
killed run and `remove_stale_temporaries` deletes it (the kernel releases a killed process's locks, so no
process-id guess is involved). Work that two processes must not do at once (one experiment) holds an
exclusive_lock, freed the same way.

Checkpoints: ours are HDF5 weight files `<extension-less path>` + CHECKPOINT_SUFFIX (model.py writes them);
the original's TF1 checkpoints (`<path>.index` + `<path>.data-00000-of-00001`) are recognised too.
"""
import contextlib
import errno
import fcntl
import hashlib
import itertools
import json
import os
import re
import shutil
import time

from absl import logging

CHECKPOINT_SUFFIX = ".weights.h5"
TF1_INDEX_SUFFIX = ".index"

TEMPORARY = re.compile(r"\.tmp-\d+-\d+$")
LOCK_SUFFIX = ".lock"
IGNORE_TEMPORARIES = ("*.tmp-*",)  # shutil.ignore_patterns arguments that skip temporaries and their locks
_COUNTER = itertools.count()
_ORPHAN_LOCK_AGE = 3600  # seconds; a younger lock without its temporary may belong to a writer starting up


def checkpoint_exists(path):
    """True when a complete checkpoint is stored at `path` (extension-less, as TrainManager gives it).

    Ours are renamed into place when complete. The original's TF1 checkpoints are recognised by their index
    file, which the TF1 saver writes after the data file.
    """
    return os.path.exists(path + CHECKPOINT_SUFFIX) or os.path.exists(path + TF1_INDEX_SUFFIX)


def _remove(path):
    """Removes a file or folder; nothing when it is gone (its writer renamed it meanwhile)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def atomic_path(path, fsync=False):
    """Yields a temporary path beside `path` to write a file or a folder to; renames it to `path` when the
    block ends without an exception (replacing an old file or folder), and removes it otherwise.

    Args:
      path: the final path; its folder is created if missing.
      fsync: flush the written file to disk before the rename (for files other runs resume from).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}-{next(_COUNTER)}"
    with open(tmp + LOCK_SUFFIX, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield tmp
            if fsync and os.path.isfile(tmp):
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            if os.path.isdir(tmp) and os.path.isdir(path):
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            _remove(tmp)
            os.remove(tmp + LOCK_SUFFIX)


def write_bytes(path, data, fsync=False):
    """Writes `data` to `path` atomically."""
    with atomic_path(path, fsync) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text(path, text, fsync=False):
    """Writes `text` (UTF-8, newlines as given) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"), fsync)


def write_json(path, doc):
    """Writes `doc` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(doc, indent=1) + "\n")


def _held(lock_path):
    """True when a live writer holds the lock file (False when it is missing or free)."""
    try:
        with open(lock_path) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except FileNotFoundError:
        return False


def _writer_gone(lock_name):
    """True when the process that named the temporary of `lock_name` (`<path>.tmp-<pid>-<n>.lock`) no longer runs on
    this machine. (A live writer's lock exists, unheld, for an instant before it takes it; a process of another
    machine sharing the folder is not seen, so an orphan lock is otherwise removed only once _ORPHAN_LOCK_AGE old.)"""
    pid = int(TEMPORARY.search(lock_name[:-len(LOCK_SUFFIX)]).group(0).split("-")[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def remove_stale_temporaries(*folders):
    """Deletes the temporaries (files or folders) under `folders` that killed runs left, with their lock
    files; a live writer's temporaries are kept. Returns the removed paths.

    Other processes may be writing in these folders meanwhile (a sweep's other experiments): a temporary or lock
    listed here may be renamed or removed by its writer before it is looked at, and is then left alone."""
    removed = []
    for top in folders:
        for root, dirs, files in os.walk(top):
            for name in sorted(dirs + files):
                path = os.path.join(root, name)
                if TEMPORARY.search(name) and not _held(path + LOCK_SUFFIX):
                    if not os.path.lexists(path):  # its writer finished (renamed it) after the listing
                        continue
                    _remove(path)
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path + LOCK_SUFFIX)
                    removed.append(path)
                    logging.info("removed %s, left by an interrupted run", path)
                elif (name.endswith(LOCK_SUFFIX) and TEMPORARY.search(name[:-len(LOCK_SUFFIX)])
                      and not os.path.lexists(path[:-len(LOCK_SUFFIX)]) and _orphan_lock(path, name)):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)  # a writer killed before it made its temporary
            dirs[:] = [d for d in dirs if not TEMPORARY.search(d)]
    return removed


def _orphan_lock(path, name):
    """Whether the lock file `path` (named `name`), whose temporary does not exist, was left by a killed writer:
    its process is gone or the lock is _ORPHAN_LOCK_AGE old, and nobody holds it. False when it is gone (its writer
    finished and removed it after the listing)."""
    try:
        old = _writer_gone(name) or time.time() - os.path.getmtime(path) > _ORPHAN_LOCK_AGE
    except FileNotFoundError:
        return False
    return old and not _held(path)


# ------------------------------------------------------------------------------------ locks held for a while

_HELD = {}  # absolute lock path -> how many blocks of this process hold it (exclusive_lock is re-entrant)


def _open_lock(path):
    """A descriptor of the lock file `path`, created (with its folder) when missing; read-only when it exists but
    cannot be written (flock needs no write access); None when it is missing and cannot be created."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None


def _holder(fd):
    """The process id the holder of a lock wrote into its file (None when unknown)."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def exclusive_lock(path, on_wait=None):
    """Holds an exclusive lock on the file `path` during the block (e.g. an experiment while one process runs it).
    Another process that asks for it waits until the block ends or the holder dies: the kernel frees a dead
    process's locks (fcntl.flock, as the temporaries' locks of atomic_path). The file is created when missing and
    kept afterwards (a process may be waiting on it); it holds the holder's process id.

    Re-entrant within a process (not between its threads): a block inside another block of the same process on the
    same path goes on at once, where a second flock of the file would wait for the first.

    Args:
      path: the lock file.
      on_wait: called with the holder's process id (None when unknown) just before this process starts waiting.

    A lock file that exists but cannot be written (a read-only folder) is locked through a read-only descriptor;
    one that is missing and cannot be created is not locked, with a warning: this process cannot write there.
    """
    key = os.path.abspath(path)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    fd = _open_lock(key)
    if fd is None:
        logging.warning("cannot create the lock file %s (read-only folder): going on without the lock", key)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(_holder(fd))
            fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(OSError):  # a read-only descriptor: the holder stays unnamed
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
    finally:
        os.close(fd)  # frees the lock


# ------------------------------------------------------------------------------------ what made an artifact

RECORD_SUFFIX = ".made.json"


def record_path(path):
    """The record beside an artifact (`path` as TrainManager gives it: extension-less for a checkpoint)."""
    return path + RECORD_SUFFIX


def _plain(value):
    """A value as JSON holds it (tuples become lists), so that a recorded and a bound value compare equal."""
    return json.loads(json.dumps(value))


def write_record(path, made_by):
    """Writes what makes the artifact at `path` ({binding: value}) beside it, atomically. Written before the
    artifact itself, so that a complete artifact always has its record (a record without its artifact, left by
    a killed run, is rewritten by the next); seal_record adds the artifact's digest once it is written."""
    write_json(record_path(path), {"made_by": _plain(made_by)})


def _artifact_files(path):
    """The files of the artifact at `path`: the file itself (a tfrecord), or a checkpoint's (ours, or a TF1
    checkpoint's index and data)."""
    return [p for p in (path, path + CHECKPOINT_SUFFIX, path + TF1_INDEX_SUFFIX, path + ".data-00000-of-00001")
            if os.path.isfile(p)]


def _sha256(file):
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def seal_record(path):
    """Adds the SHA-256 of the artifact's files (now complete) to its record: a later reuse checks that the
    bytes are still the ones written (HDF5 and tfrecords carry no checksum of their own). An artifact killed
    between its rename and this call keeps a record without digest: check_record seals it on its first reuse."""
    with open(record_path(path), encoding="utf-8") as f:
        doc = json.load(f)
    doc["sha256"] = {os.path.basename(p): _sha256(p) for p in _artifact_files(path)}
    write_json(record_path(path), doc)


def check_record(path, made_by, index_of):
    """Checks that the artifact at `path` was made with the values `made_by` ({binding: value}) before it is
    reused. An artifact without a record (the original's checkpoints, runs from before records) is reused as it
    is; only the bindings both sides hold are compared. A record without digest (its run was killed between the
    artifact's rename and seal_record) is sealed now: the artifact is whole, since it got its name only once
    complete, and from here on a damaged copy is found.

    Args:
      index_of: binding -> the index binding to change so that a run with other values writes its own
        artifacts (named in the error).

    Raises:
      ValueError naming the artifact, the binding, both values and the index binding to change.
    """
    try:
        with open(record_path(path), encoding="utf-8") as f:
            recorded_doc = json.load(f)
        recorded = recorded_doc["made_by"]
    except FileNotFoundError:
        return
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{record_path(path)}: not a record of what made {path} ({e}); delete both to make "
                         f"it again") from None
    for name, digest in (recorded_doc.get("sha256") or {}).items():
        file = os.path.join(os.path.dirname(path), name)
        if not os.path.isfile(file) or _sha256(file) != digest:
            raise ValueError(f"{file} is not the file that was written (its SHA-256 differs from the one recorded in "
                             f"{record_path(path)}): it was damaged or replaced; delete it and its record to make it "
                             f"again")
    current = _plain(made_by)
    for name, value in current.items():
        if name in recorded and recorded[name] != value:
            raise ValueError(
                f"{path} was made with {name} = {recorded[name]!r}, but this run has {name} = {value!r}; its "
                f"name would be reused for other values: change {index_of(name)} to an index no other run "
                f"of this folder uses (or delete the artifact to make it again)")
    if "sha256" not in recorded_doc and _artifact_files(path):
        logging.info("%s: its record has no digest (its run ended before sealing it); sealed now", path)
        seal_record(path)
