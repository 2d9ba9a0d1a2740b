"""Failure analysis of one run from its frame-level validation predictions (val_frames.npz).

- va: the videos with the lowest CCC, and the CCC per valence/arousal quadrant of the truth;
- violence: false positives and false negatives per video, worst first.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fgvu.fusion.run_folder import FrameTable, load_val_frames
from fgvu.tasks import get_task

QUADRANTS = (  # (name, valence >= 0, arousal >= 0)
    ("V+ A+ (excited, happy)", True, True),
    ("V- A+ (angry, afraid)", False, True),
    ("V- A- (sad, bored)", False, False),
    ("V+ A- (calm, content)", True, False),
)


def _ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The benchmark CCC, or nan for fewer than two frames or non-finite predictions (a diverged model).

    A constant truth and prediction is not nan: metrics.ccc scores that 0/0 case 0.
    """
    from fgvu.fusion.metrics import ccc

    if len(y_true) < 2:
        return math.nan
    value = float(ccc(y_true, y_pred))
    return value if math.isfinite(value) else math.nan


def _nan_last(value: float) -> tuple[bool, float]:
    return (math.isnan(value), value)


def va_per_video(vf: FrameTable) -> list[dict]:
    """CCC of valence, arousal and their mean for every video, worst mean CCC first (nan last)."""
    rows = []
    for v, name in enumerate(vf.video_names):
        sel = vf.video == v
        row = {"video": str(name), "frames": int(sel.sum())}
        for k, dim in enumerate(("valence", "arousal")):
            ok = sel & vf.mask[:, k]
            row[f"ccc_{dim}"] = _ccc(vf.y_true[ok, k], vf.y_pred[ok, k])
            row[f"valid_{dim}"] = int(ok.sum())
        row["ccc_mean"] = (row["ccc_valence"] + row["ccc_arousal"]) / 2
        rows.append(row)
    return sorted(rows, key=lambda r: _nan_last(r["ccc_mean"]))


def va_quadrants(vf: FrameTable) -> list[dict]:
    """CCC and mean absolute error per quadrant of the true (valence, arousal), over frames valid in both."""
    both = vf.mask[:, 0] & vf.mask[:, 1]
    rows = []
    for name, v_pos, a_pos in QUADRANTS:
        sel = both & ((vf.y_true[:, 0] >= 0) == v_pos) & ((vf.y_true[:, 1] >= 0) == a_pos)
        row = {"quadrant": name, "frames": int(sel.sum())}
        for k, dim in enumerate(("valence", "arousal")):
            row[f"ccc_{dim}"] = _ccc(vf.y_true[sel, k], vf.y_pred[sel, k])
            row[f"mae_{dim}"] = float(np.abs(vf.y_true[sel, k] - vf.y_pred[sel, k]).mean()) if sel.any() else math.nan
        rows.append(row)
    return rows


def violence_per_video(vf: FrameTable) -> list[dict]:
    """False positives and negatives per video over valid frames, most errors first."""
    valid = vf.mask[:, 0]
    truth = vf.y_true[:, 0] >= 0.5
    predicted = vf.labels.astype(bool)
    rows = []
    for v, name in enumerate(vf.video_names):
        sel = valid & (vf.video == v)
        fp = int((sel & predicted & ~truth).sum())
        fn = int((sel & ~predicted & truth).sum())
        frames = int(sel.sum())
        rows.append({"video": str(name), "frames": frames, "violent": int((sel & truth).sum()),
                     "predicted_violent": int((sel & predicted).sum()), "false_positives": fp,
                     "false_negatives": fn, "error_rate": (fp + fn) / frames if frames else math.nan})
    return sorted(rows, key=lambda r: (-(r["false_positives"] + r["false_negatives"]), _nan_last(-r["error_rate"])))


def _fmt(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A Markdown table of dict rows (floats to 3 decimals, nan as n/a)."""
    if not rows:
        return "(no rows)\n"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def va_failure_analysis(vf: FrameTable, worst: int = 10) -> str:
    """The valence/arousal failure analysis: worst videos by mean CCC, and CCC per quadrant."""
    per_video = va_per_video(vf)
    return (f"Worst {min(worst, len(per_video))} of {len(per_video)} validation videos by mean CCC:\n\n"
            + markdown_table(per_video[:worst], ["video", "frames", "ccc_valence", "ccc_arousal", "ccc_mean"])
            + "\nCCC per quadrant of the true valence/arousal (frames valid in both; CCC within a quadrant "
            "is limited by its narrower range, so compare the MAE too):\n\n"
            + markdown_table(va_quadrants(vf)))


def violence_failure_analysis(vf: FrameTable, worst: int = 10) -> str:
    """The violence failure analysis: false positives and negatives per video, worst first."""
    per_video = violence_per_video(vf)
    total_fp = sum(r["false_positives"] for r in per_video)
    total_fn = sum(r["false_negatives"] for r in per_video)
    return (f"False positives ({total_fp}) and false negatives ({total_fn}) per validation video, "
            f"worst {min(worst, len(per_video))} of {len(per_video)}:\n\n"
            + markdown_table(per_video[:worst]))


def failure_analysis(run_dir: str | Path, task: str, worst: int = 10) -> str:
    """The failure analysis of one run as Markdown (without a top-level title), as its task defines it."""
    return get_task(task).failure_analysis(load_val_frames(run_dir), worst)
