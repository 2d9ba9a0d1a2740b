"""Shifted targets: each video's labels move by k frames, never across videos; the demo's alignment line."""

from __future__ import annotations

import numpy as np
import pytest

from fgvu.commands.demo import alignment_line
from fgvu.fusion.run_folder import VAL_FRAMES, FrameTable
from fgvu.synth.alignment import shift_targets, shifted_scores


def test_shift_targets_moves_labels_inside_each_video():
    video = np.array([0, 0, 0, 1, 1])
    frame = np.array([0, 1, 2, 0, 1])
    y = np.array([[10.0], [11.0], [12.0], [20.0], [21.0]])
    mask = np.array([[True], [False], [True], [True], [True]])
    shifted, shifted_mask = shift_targets(video, frame, y, mask, 1)
    assert shifted[:, 0].tolist() == [11.0, 12.0, 0.0, 21.0, 0.0]
    assert shifted_mask[:, 0].tolist() == [False, True, False, True, False]  # frame 1 was invalid; ends drop out
    back, back_mask = shift_targets(video, frame, y, mask, -1)
    assert back[:, 0].tolist() == [0.0, 10.0, 11.0, 0.0, 20.0]
    assert back_mask[:, 0].tolist() == [False, True, False, False, True]


def test_alignment_line_scores_the_runs_validation_predictions_against_shifted_labels(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    steps = np.repeat(rng.uniform(-1, 1, size=(n // 10, 2)), 10, axis=0).astype(np.float32)  # events of 10 frames
    table = FrameTable(video_names=np.array(["a", "b"]), video=np.repeat([0, 1], n // 2),
                       frame=np.tile(np.arange(n // 2), 2), y_true=steps, y_pred=steps.copy(),
                       mask=np.ones((n, 2), bool))
    table.save(tmp_path / VAL_FRAMES)
    line = alignment_line(tmp_path)
    scores = shifted_scores(table.video, table.frame, table.y_true, table.y_pred, table.mask, ("valence", "arousal"))
    drop = np.mean([s["aligned"] - s["shifted"] for s in scores.values()])
    assert scores["valence"]["aligned"] == pytest.approx(1.0) and drop > 0.05
    assert line.startswith("the same predictions against labels shifted by 1 frame") and f"(drop {drop:.4f})" in line
