"""Submission files: the ABAW predictions.txt follows the organisers' sample exactly, DVD follows its template's
numbering, missing frames are filled and counted, and the readers read back what the writers wrote."""

import numpy as np
import pytest

from fgvu.submissions import (
    SubmissionError, nearest, read_abaw_predictions, read_dvd_predictions, write_abaw_file, write_dvd_from_template,
    write_dvd_video,
)
from fgvu.tasks import get_task


def predictions(rng, lengths: dict[str, int]) -> dict[str, np.ndarray]:
    return {v: rng.uniform(-1, 1, (n, 2)) for v, n in lengths.items()}


def test_nearest_fills_from_the_closest_predicted_frame():
    pick, filled = nearest(np.array([2, 3, 7]), np.array([0, 2, 5, 6, 7, 40]))
    assert pick.tolist() == [0, 0, 1, 2, 2, 2] and filled.tolist() == [True, False, True, True, False, True]


def test_abaw_file_follows_a_shuffled_sample_exactly(tmp_path):
    rng = np.random.default_rng(0)
    pred = predictions(rng, {"10-60-1280x720": 30, "video7_left": 20, "video7_right": 20, "unused": 5})
    rows = [f"{v}/{f + 1:05d}.jpg" for v in ("10-60-1280x720", "video7_left", "video7_right")
            for f in range(len(pred[v]))]
    rows += ["video7_left/00021.jpg", "video7_left/00025.jpg"]  # the sample has frames past the decoded end
    order = rng.permutation(len(rows))
    sample = tmp_path / "sample.txt"
    sample.write_text("image_location,valence,arousal\n" + "".join(f"{rows[i]},,\n" for i in order))
    written = write_abaw_file(sample, tmp_path / "out", pred)
    lines = (tmp_path / "out" / "predictions.txt").read_text().splitlines()
    assert lines[0] == "image_location,valence,arousal" and len(lines) == len(rows) + 1
    assert [line.split(",")[0] for line in lines[1:]] == [rows[i] for i in order]  # its rows, in its order
    for line in lines[1:]:
        location, v, a = line.split(",")
        video, image = location.split("/")
        frame = min(int(image[:5]) - 1, len(pred[video]) - 1)  # past the end: the last predicted frame
        np.testing.assert_allclose([float(v), float(a)], pred[video][frame], atol=5e-7)
    assert written.rows == len(rows) and written.filled == 2 and written.filled_by_video == {"video7_left": 2}
    assert written.unused_videos == ["unused"] and "2 rows had no predicted frame" in written.summary()
    # read back: every row of the sample, with its values
    back = read_abaw_predictions(tmp_path / "out" / "predictions.txt")
    assert back["video7_left"].frames.tolist() == list(range(20)) + [20, 24]
    np.testing.assert_allclose(back["10-60-1280x720"].values, pred["10-60-1280x720"], atol=5e-7)


def test_abaw_sample_problems_name_the_file(tmp_path):
    sample = tmp_path / "s.txt"
    sample.write_text("image_location,valence,arousal\nv/00001.jpg,,\nghost/00001.jpg,,\n")
    with pytest.raises(SubmissionError, match=r"s\.txt: 1 videos of the sample file have no predictions: ghost"):
        write_abaw_file(sample, tmp_path / "o", {"v": np.zeros((3, 2))})
    sample.write_text("image_location,valence,arousal\nv/frame1.jpg,,\n")
    with pytest.raises(SubmissionError, match=r"s\.txt: line 2: 'v/frame1.jpg' is not <video>/<frame number>"):
        write_abaw_file(sample, tmp_path / "o", {"v": np.zeros((3, 2))})
    sample.write_text("v/00001.jpg,,\n")
    with pytest.raises(SubmissionError, match="the first line must be the header"):
        write_abaw_file(sample, tmp_path / "o", {"v": np.zeros((3, 2))})


def test_dvd_files_carry_probabilities_and_follow_a_one_based_template(tmp_path):
    prob = {"a": np.array([0.1, 0.9, 0.4999996, 0.7]), "b": np.array([0.8, 0.2])}
    path = write_dvd_video(tmp_path, "a", prob["a"])
    lines = path.read_text().splitlines()
    assert lines[0] == "Frame_Number,Predicted_Label,Violence_Probability"
    # numbered from 0; the label is P >= 0.5, and rounding never carries a 0 across the threshold
    assert lines[1:] == ["0,0,0.100000", "1,1,0.900000", "2,0,0.499999", "3,1,0.700000"]
    template = tmp_path / "template"
    template.mkdir()
    (template / "a.csv").write_text("Frame,Label\n" + "".join(f"{f},0\n" for f in range(1, 6)))  # 1-based, 5 rows
    (template / "b.csv").write_text("Label\n0\n1\n")  # no frame column: rows are frames from 0
    written = write_dvd_from_template(template, tmp_path / "out", prob)
    a = (tmp_path / "out" / "a.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in a[1:]] == ["1", "2", "3", "4", "5"]  # the template's numbering
    assert [float(line.split(",")[2]) for line in a[1:]] == pytest.approx([0.1, 0.9, 0.499999, 0.7, 0.7])
    assert written.filled == 1 and written.filled_by_video == {"a": 1} and written.rows == 7
    back = read_dvd_predictions(tmp_path / "out")
    assert back["a"].frames.tolist() == [0, 1, 2, 3, 4]  # read back by the same 0/1-based rule
    assert back["a"].values[:, 0].tolist() == [0, 1, 0, 1, 1] and back["b"].prob.tolist() == [0.8, 0.2]
    with pytest.raises(SubmissionError, match="videos of the template have no predictions: a"):
        write_dvd_from_template(template, tmp_path / "o2", {"b": prob["b"]})


def test_the_task_registry_dispatches_the_formats(tmp_path):
    sample = tmp_path / "s.txt"
    sample.write_text("image_location,valence,arousal\nv/00002.jpg,,\n")
    written = get_task("va").write_from_sample(sample, tmp_path / "va", {"v": np.array([[0.1, 0.2], [0.3, 0.4]])})
    assert written.files == [tmp_path / "va" / "predictions.txt"]
    assert (tmp_path / "va" / "predictions.txt").read_text().splitlines()[1] == "v/00002.jpg,0.300000,0.400000"
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "v.csv").write_text("Frame_Number,Label\n0,0\n1,1\n")
    written = get_task("violence").write_from_sample(tmp_path / "t", tmp_path / "dvd", {"v": np.array([[0.2], [0.6]])})
    assert (tmp_path / "dvd" / "v.csv").read_text().splitlines()[1:] == ["0,0,0.200000", "1,1,0.600000"]
