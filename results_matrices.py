"""The matrices file of an experiment: `<name>.matrices.npz` beside its results file `<name>.txt` holds what the
text is printed from, per validated step its confusion matrix, loss and old / new classes (README "Results as
data"). A plain numpy .npz (numpy.load reads it), written atomically, the same entries giving the same bytes
(write_matrices), read back with every fault named (read_matrices). results_file.append_results writes it under the
experiment's lock, before the step's text block; results_file.matrix_blocks reads it for the summaries. `results`
re-exports these names.
"""
import io
import os
import zipfile
import zlib

import numpy as np

import artifacts

MATRICES_SUFFIX = ".matrices.npz"
# The arrays of a matrices file, over its S steps (n classes): name -> (dtype, shape as a function of S and n).
_MATRIX_ARRAYS = {"step": (np.int64, lambda s, n: (s,)), "loss": (np.float64, lambda s, n: (s,)),
                  "confusion_matrix": (np.int64, lambda s, n: (s, n, n)),
                  "old_classes": (np.int64, lambda s, n: (s, n)), "new_classes": (np.int64, lambda s, n: (s, n))}


def matrices_path(results_file):
    """`<name>.matrices.npz` beside the results file `<name>.txt`: the data of its steps (write_matrices)."""
    return os.path.splitext(results_file)[0] + MATRICES_SUFFIX


def write_matrices(path, entries):
    """Writes a matrices file atomically: a numpy .npz (np.load(path) reads it) with, over the steps in order,
    `step` int64 [S], `loss` float64 [S], `confusion_matrix` int64 [S, n, n] (rows ground truth, columns prediction),
    `old_classes` and `new_classes` int64 [S, n] (each step's class ids in order, padded with -1; a first step has
    no old class). The same entries give the same bytes (no time stamps in the archive).

    Args:
      entries: list of dicts: step (int), loss (float), confusion_matrix (int [n, n], one n for all),
        old_classes (list of int or None), new_classes (list of int).
    """
    n = entries[0]["confusion_matrix"].shape[0] if entries else 0
    shapes = sorted({np.shape(e["confusion_matrix"]) for e in entries})
    if shapes and shapes != [(n, n)]:
        raise ValueError(f"{path}: the matrices of one experiment are [n, n] of one n, got {shapes}")

    def classes(lists):
        out = np.full((len(lists), n), -1, np.int64)
        for i, values in enumerate(lists):
            out[i, :len(values or [])] = values or []
        return out

    arrays = {"step": np.array([e["step"] for e in entries], np.int64).reshape(-1),
              "loss": np.array([e["loss"] for e in entries], np.float64).reshape(-1),
              "confusion_matrix": np.array([e["confusion_matrix"] for e in entries], np.int64).reshape(-1, n, n),
              "old_classes": classes([e["old_classes"] for e in entries]),
              "new_classes": classes([e["new_classes"] for e in entries])}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
    artifacts.write_bytes(path, buffer.getvalue(), fsync=True)


def _class_list(row, n, where):
    values = [int(v) for v in row]
    length = values.index(-1) if -1 in values else len(values)
    if any(v != -1 for v in values[length:]) or any(not 0 <= v < n for v in values[:length]) \
            or len(set(values[:length])) != length:
        raise ValueError(f"{where}: expected distinct class ids in [0, {n}) padded with -1 at the end, got {values}")
    return values[:length]


def read_matrices(path):
    """Reads a matrices file (write_matrices).

    Returns:
      list of dicts sorted by step: step (int), loss (float), confusion_matrix (int64 numpy [n, n]), old_classes
      (list of int, None for a step without), new_classes (list of int).

    Raises:
      FileNotFoundError; ValueError naming the file and its fault (not an .npz, a missing array, another dtype or
      shape, negative counts, a class id outside the matrix, a step without new classes, a step held twice).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"matrices file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in _MATRIX_ARRAYS if name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"{path}: not a matrices file ({type(e).__name__}: {e})") from None
    missing = [name for name in _MATRIX_ARRAYS if name not in arrays]
    if missing:
        raise ValueError(f"{path}: lacks the arrays {missing}")
    cms = arrays["confusion_matrix"]
    if cms.ndim != 3 or cms.shape[1] != cms.shape[2]:
        raise ValueError(f"{path}: confusion_matrix of shape {cms.shape}, expected [steps, n, n]")
    s, n = cms.shape[:2]
    for name, (dtype, shape) in _MATRIX_ARRAYS.items():
        if arrays[name].dtype != dtype or arrays[name].shape != shape(s, n):
            raise ValueError(f"{path}: {name} is {arrays[name].dtype} {arrays[name].shape}, expected "
                             f"{np.dtype(dtype)} {shape(s, n)}")
    if (cms < 0).any():
        raise ValueError(f"{path}: negative counts in confusion_matrix")
    entries, seen = [], set()
    for i in range(s):
        step, where = int(arrays["step"][i]), f"{path}: step {int(arrays['step'][i])}"
        if step in seen:
            raise ValueError(f"{where} appears twice: a matrices file holds each step once")
        seen.add(step)
        new = _class_list(arrays["new_classes"][i], n, f"{where}: new_classes")
        if not new:
            raise ValueError(f"{where}: no new class")
        old = _class_list(arrays["old_classes"][i], n, f"{where}: old_classes") or None
        entries.append(dict(step=step, loss=float(arrays["loss"][i]), confusion_matrix=cms[i], old_classes=old,
                            new_classes=new))
    return sorted(entries, key=lambda e: e["step"])
