import numpy as np
import pytest

from fgvu.sampling import SamplingError, SamplingPlan, step_frames


def test_design_example_250_frames():
    starts = SamplingPlan().window_starts(250)
    assert len(starts) == 13
    assert starts[:12].tolist() == list(range(0, 177, 16))
    assert starts[12] == 192  # the padded window starts at the next multiple of the stride


@pytest.mark.parametrize("n", [1, 10, 63, 64, 65, 79, 80, 81, 250, 1000, 1001])
@pytest.mark.parametrize("stride", [8, 16, 32, 64])
def test_every_frame_covered_and_starts_on_stride(n, stride):
    plan = SamplingPlan(stride=stride)
    starts = plan.window_starts(n)
    assert (starts % stride == 0).all()
    covered = np.zeros(n, bool)
    for s in starts:
        covered[s : s + plan.window] = True
    assert covered.all()
    # only the last window may run past the end
    assert (starts[:-1] + plan.window <= n).all()


def test_short_video_is_one_padded_window():
    layout = SamplingPlan().layout(10)
    assert layout.n_windows == 1
    assert layout.valid[0].sum() == 10 and not layout.valid[0, 10:].any()
    # positions past the end repeat the last frame
    assert layout.image_frames.tolist() == [0, 4, 8, 9]
    assert layout.image_frames[layout.image_index[0]].tolist() == [0, 4, 8] + [9] * 13


def test_grid_frames_shared_and_deduplicated():
    plan = SamplingPlan()
    layout = plan.layout(1000)
    # image and caption tables hold each grid frame once
    assert len(np.unique(layout.image_frames)) == len(layout.image_frames)
    assert (layout.image_frames[:-1] % 4 == 0).all()
    img = layout.image_frames[layout.image_index]
    assert (img == np.minimum(layout.starts[:, None] + 4 * np.arange(16), 999)).all()
    cap = layout.caption_frames[layout.caption_index]
    assert (cap == np.minimum(layout.starts[:, None] + 16 * np.arange(4), 999)).all()
    # window-by-window encoding would cost 4x more image and caption calls at stride 16
    assert layout.image_index.size / len(layout.image_frames) == pytest.approx(4, rel=0.05)
    assert layout.caption_index.size / len(layout.caption_frames) == pytest.approx(4, rel=0.1)


def test_clip_frames_for_other_lengths():
    layout = SamplingPlan(video_frames=(8, 16, 32)).layout(300)
    assert layout.clip_frames[8].shape == (layout.n_windows, 8)
    assert (np.diff(layout.clip_frames[32][0]) == 2).all()
    assert (layout.clip_frames[16] == layout.image_frames[layout.image_index]).all()
    assert set(layout.clip_frames[8].ravel()) <= set(layout.needed_frames())


def test_step_frames():
    assert step_frames(np.array([0, 16]), 4, 16).tolist() == [[0, 16, 32, 48], [16, 32, 48, 64]]


@pytest.mark.parametrize("kwargs", [dict(window=64, image_every=5), dict(stride=0), dict(video_frames=(12,)),
                                    dict(caption_every=48)])
def test_inconsistent_plans_are_refused(kwargs):
    with pytest.raises(SamplingError):
        SamplingPlan(**kwargs)


def test_round_trip_dict():
    plan = SamplingPlan(stride=8, video_frames=(8, 16))
    assert SamplingPlan.from_dict(plan.to_dict()) == plan
