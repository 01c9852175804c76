"""docs/recall_in_a_notebook.ipynb runs from top to bottom (nbclient), two experiments in one kernel, and
shows the summary table and an inline plot."""
import os

import nbclient
import nbformat

from conftest import ROOT

NOTEBOOK = os.path.join(ROOT, "docs", "recall_in_a_notebook.ipynb")


def test_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RECALL_NOTEBOOK_BASE", str(tmp_path / "base"))  # the kernel inherits the environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "DISJOINT (T1_P1.0.0.2_gan)" in text  # the experiment's name, from the original's config
    assert "batch 8" in text  # the override from Python took effect
    table = [line for line in text.splitlines() if line.startswith("| DISJOINT |")
             or line.startswith("| FINE_TUNING_DISJOINT |")]
    assert len(table) == 2, text[-3000:]
    assert text.count("(from the matrices)") == 2  # results.load: the numbers of both from their matrices files
    images = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert (tmp_path / "base" / "outputs" / "summary.csv").exists()
