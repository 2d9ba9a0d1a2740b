"""Can a benchmark notice misaligned labels? Frame-level targets shifted by a few frames.

A synthetic benchmark is only useful if it can fail: labels that are one frame off must score
measurably worse than aligned ones (the Aff-Wild2 synthetic targets are sharp events, see
`fgvu.synth.videos.event_curve`). `shift_targets` moves each video's targets by `shift`
frames; `shifted_scores` scores the same predictions against aligned and shifted targets, on
the frames where both are valid, one CCC per target.
"""

from __future__ import annotations

import numpy as np

from fgvu.fusion.metrics import ccc


def shift_targets(video: np.ndarray, frame: np.ndarray, y_true: np.ndarray, mask: np.ndarray,
                  shift: int) -> tuple[np.ndarray, np.ndarray]:
    """(targets, mask) where the row of frame f of a video holds that video's target of frame f + shift.

    Rows whose frame f + shift is not in the table (past a video's end) are masked.
    """
    video, frame = np.asarray(video, np.int64), np.asarray(frame, np.int64)
    y_true, mask = np.asarray(y_true), np.asarray(mask, bool)
    row_of = {(v, f): r for r, (v, f) in enumerate(zip(video.tolist(), frame.tolist()))}
    source = np.array([row_of.get((v, f + shift), -1) for v, f in zip(video.tolist(), frame.tolist())], np.int64)
    found = source >= 0
    shifted = np.zeros_like(y_true)
    shifted_mask = np.zeros_like(mask)
    shifted[found], shifted_mask[found] = y_true[source[found]], mask[source[found]]
    return shifted, shifted_mask


def shifted_scores(video, frame, y_true, y_pred, mask, names: tuple[str, ...], shift: int = 1) -> dict:
    """{name: {"aligned": CCC, "shifted": CCC}} of `y_pred` against aligned and shifted targets.

    Both scores use the same frames: those valid in the aligned and in the shifted targets.
    """
    y_true, y_pred, mask = (np.asarray(a) for a in (y_true, y_pred, mask))
    shifted, shifted_mask = shift_targets(video, frame, y_true, mask, shift)
    both = mask & shifted_mask
    return {name: {"aligned": ccc(y_true[:, j], y_pred[:, j], both[:, j]),
                   "shifted": ccc(shifted[:, j], y_pred[:, j], both[:, j])}
            for j, name in enumerate(names)}
