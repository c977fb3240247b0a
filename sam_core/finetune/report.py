"""What a fine-tuning run leaves to read: ``metrics.jsonl`` (one JSON object per line) and ``curves.png``.

Records have ``kind`` ``"train"`` (one per step: ``step``, ``loss``, ``mask_loss``, ``iou_loss``, ``lr``,
``objects``, ``seconds`` since the run started) or ``"val"`` (``step``, ``val_miou``, ``miou_1click``,
``miou_box``). ``step`` counts completed updates (0: the model before training).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sam_core.io.files import write_atomically

SMOOTHING_WINDOW = 20  # steps averaged in the plotted training loss


class MetricsLog:
    """An append-only JSON-lines file of metric records.

    Args:
        path: the file.
        keep_until: records of a previous run with ``step`` up to this are kept (a resumed run continues
            after its last saved state); None starts a new file.
    """

    def __init__(self, path: str | os.PathLike, keep_until: int | None = None) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        if keep_until is not None and self.path.is_file():
            lines = self.path.read_text().splitlines()
            self.records = [record for record in map(json.loads, filter(None, lines))
                            if record.get("step", 0) <= keep_until]
        text = "".join(json.dumps(record) + "\n" for record in self.records)
        write_atomically(self.path, lambda temporary: temporary.write_text(text))

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def plot_curves(records: list[dict[str, Any]], path: str | os.PathLike) -> bool:
    """Training loss (raw and smoothed) and validation mIoU against the step, written to ``path``.

    Returns False, writing nothing, when matplotlib is not installed (``pip install 'sam_core[finetune]'``).
    """
    try:
        # A bare Figure renders to files without pyplot, leaving the caller's backend and figures alone.
        from matplotlib.figure import Figure
    except ImportError:
        return False
    train = [record for record in records if record["kind"] == "train"]
    val = [record for record in records if record["kind"] == "val"]
    figure = Figure(figsize=(10, 3.8), layout="tight")
    loss_axes, val_axes = figure.subplots(1, 2)
    steps = [record["step"] for record in train]
    losses = [record["loss"] for record in train]
    loss_axes.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="loss")
    window = min(SMOOTHING_WINDOW, len(losses))
    if window:
        smoothed = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
                    for i in range(len(losses))]
        loss_axes.plot(steps, smoothed, color="tab:blue", label=f"mean of {window} steps")
    loss_axes.set(xlabel="step", ylabel="training loss", title="training loss")
    loss_axes.legend()
    val_axes.plot([r["step"] for r in val], [r["val_miou"] for r in val], "o-", color="tab:green",
                  label="val mIoU (1 click, box)")
    val_axes.set(xlabel="step", ylabel="mIoU", title="validation")
    val_axes.legend()
    write_atomically(Path(path), lambda temporary: figure.savefig(temporary, format="png", dpi=90))
    return True
