"""`fgvu score`: a benchmark's official metric from a submission and the annotation files alone.

No cache, run or torch is involved: the submission is read with the task's reader
(`Task.read_predictions`), the annotations exactly as extraction reads them
(`Task.read_annotations`), and the frames are pooled over every annotated video, as the
challenges score. Every valid annotated frame needs a prediction; predicted videos without
annotations are counted and left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fgvu.fusion import bootstrap
from fgvu.fusion.run_folder import FrameTable
from fgvu.submissions import LISTED, SubmissionError
from fgvu.tasks import get_task


def score_files(predictions: str | Path, annotations: str | Path, task: str,
                draws: int = bootstrap.DRAWS) -> dict:
    """{"task", "predictions", "annotations", "n_videos", "n_frames", "n_valid", "metrics" (with
    <metric>_ci over base videos), "bootstrap", "warnings", "unscored_videos"}."""
    entry = get_task(task)
    predicted = entry.read_predictions(Path(predictions))
    truth = entry.read_annotations(Path(annotations))
    missing = sorted(set(truth) - set(predicted))
    if missing:
        raise SubmissionError(f"{predictions}: no predictions for {len(missing)} annotated videos "
                              f"({', '.join(missing[:LISTED])}{' ...' if len(missing) > LISTED else ''})")
    names = sorted(truth)
    y_true, y_pred, mask, prob, video, frame = [], [], [], [], [], []
    for i, name in enumerate(names):
        values, valid = truth[name]
        pred, p = entry.scored_values(predicted[name])
        frames = predicted[name].frames
        rows = np.searchsorted(frames, np.arange(len(values)))
        found = (rows < len(frames)) & (frames[np.minimum(rows, len(frames) - 1)] == np.arange(len(values)))
        lacking = valid.any(axis=1) & ~found
        if lacking.any():
            first = int(np.flatnonzero(lacking)[0])
            raise SubmissionError(f"{predictions}: video {name}: {int(lacking.sum())} annotated frames have no "
                                  f"prediction (the first is frame {first + 1} in 1-based numbering)")
        at = np.minimum(rows, len(frames) - 1)[found]  # frames without a prediction have no valid target
        y_true.append(values[found])
        mask.append(valid[found])
        y_pred.append(pred[at])
        prob.append(p[at] if p is not None else None)
        video.append(np.full(int(found.sum()), i))
        frame.append(np.flatnonzero(found))
    cat = np.concatenate
    table = FrameTable(np.array(names), cat(video), cat(frame), cat(y_true), cat(y_pred), cat(mask),
                       cat(prob) if prob[0] is not None else None)
    metrics = entry.metrics(table.y_true, table.y_pred, table.mask, table.prob)
    return {
        "task": task, "predictions": str(predictions), "annotations": str(annotations), "n_videos": len(names),
        "n_frames": int(len(table.frame)), "n_valid": int(table.mask.all(axis=1).sum()),
        "metrics": bootstrap.with_intervals(entry, table, metrics, draws),
        "bootstrap": bootstrap.bootstrap_note(table, entry, draws),
        "warnings": bootstrap.degenerate_warnings(entry, table, f"annotations {annotations}"),
        "unscored_videos": sorted(set(predicted) - set(truth)),
    }
