"""Dataset adapters on small synthetic trees: items, splits, shared sources, targets, bad annotations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgvu.extract.datasets import ADAPTERS, DatasetError, VideoItem, build_adapter
from fgvu.extract.video_source import open_video
from fgvu.synth.videos import numbered_frame, read_frame_number, write_video


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def va_file(path: Path, rows, header: str = "valence,arousal") -> Path:
    lines = ([header] if header else []) + [r if isinstance(r, str) else f"{r[0]},{r[1]}" for r in rows]
    return touch(path, "\n".join(lines) + "\n")


def numbered_video(path: Path, n: int) -> Path:
    write_video(path, np.stack([numbered_frame(k) for k in range(n)]))
    return path


def frame_folder(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for k in range(n):
        Image.fromarray(numbered_frame(k)).save(folder / f"{k + 1:05d}.jpg")
    return folder


def by_name(items: list[VideoItem]) -> dict[str, VideoItem]:
    return {it.name: it for it in items}


def test_registry():
    assert set(ADAPTERS) == {"aff-wild2", "dvd", "folder"}
    assert build_adapter("dvd", "x").task == "violence" and build_adapter("aff-wild2", "x").task == "va"
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        build_adapter("nope", "x")
    with pytest.raises(DatasetError, match="frames must be"):
        build_adapter("aff-wild2", "x", frames="faces")
    with pytest.raises(DatasetError, match="'dvd' has no option frames"):
        build_adapter("dvd", "x", frames="cropped_aligned")
    assert build_adapter("dvd", "x", frames=None).root == Path("x")  # None options are dropped


@pytest.mark.parametrize("name,layout_word", [("aff-wild2", "VA_Estimation_Challenge"), ("dvd", "Training/videos"),
                                              ("folder", "labels.csv")])
def test_missing_root_says_where_to_put_the_data(tmp_path, name, layout_word):
    with pytest.raises(DatasetError) as err:
        build_adapter(name, tmp_path / "absent").items()
    message = str(err.value)
    assert f"data/{name}" in message and f"$FGVU_DATA/{name}" in message and layout_word in message
    assert str(tmp_path / "absent") in message


# ---- aff-wild2 ----------------------------------------------------------------------------


def test_affwild2_flat_layout_with_pairs_and_test_list(tmp_path):
    root = tmp_path / "aw"
    for video in ("batch1/a.mp4", "batch2/b.avi", "batch2/pair.mp4", "batch1/c.mp4", "batch1/unlisted.mp4"):
        touch(root / video)
    ann = root / "VA_Estimation_Challenge"
    va_file(ann / "Train_Set/a.txt", [(0, 0)])
    va_file(ann / "Validation_Set/b.txt", [(0, 0)])
    va_file(ann / "Train_Set/pair_left.txt", [(0, 0)])
    va_file(ann / "Train_Set/pair_right.txt", [(0, 0)])
    va_file(ann / "Train_Set/ghost.txt", [(0, 0)])  # no video: skipped with a warning
    touch(ann / "Test_Set/names.txt", "c\n")
    adapter = build_adapter("aff-wild2", root)
    with pytest.warns(UserWarning, match="1 videos have no annotations and are not extracted: unlisted"):
        with pytest.warns(UserWarning, match="1 annotated names have no source.*ghost"):
            items = adapter.items()
    assert [it.name for it in items] == ["a", "b", "c", "pair_left", "pair_right"]
    named = by_name(items)
    assert {n: it.split for n, it in named.items()} == {"a": "train", "b": "val", "c": "test",
                                                       "pair_left": "train", "pair_right": "train"}
    assert named["pair_left"].source == named["pair_right"].source == root / "batch2/pair.mp4"
    assert named["pair_left"].annotation == ann / "Train_Set/pair_left.txt"
    assert named["b"].source == root / "batch2/b.avi"
    assert named["c"].annotation is None
    assert adapter.skipped == [("ghost", "no video")]
    unlabelled = adapter.load_targets(named["c"], 7)
    assert unlabelled.values.shape == (7, 2) and not unlabelled.mask.any()


def test_affwild2_nested_layout_cropped_frames_and_test_list_option(tmp_path):
    root = tmp_path / "aw"
    touch(root / "raw/videos/batch1/x.mp4")
    touch(root / "raw/videos/batch1/y.mp4")
    ann = root / "annotations/VA_Estimation_Challenge"
    va_file(ann / "Validation_Set/x_left.txt", [(0, 0)])
    va_file(ann / "Validation_Set/x_right.txt", [(0, 0)])
    test_list = touch(tmp_path / "test_names.txt", "y.mp4\n\n")
    items = build_adapter("aff-wild2", root, test_list=test_list).items()
    assert [(it.name, it.split, it.source.name) for it in items] == [
        ("x_left", "val", "x.mp4"), ("x_right", "val", "x.mp4"), ("y", "test", "y.mp4")]
    for name in ("x_left", "x_right"):
        frame_folder(root / "faces/cropped_aligned" / name, 3)
    cropped = build_adapter("aff-wild2", root, frames="cropped_aligned", test_list=test_list)
    with pytest.warns(UserWarning, match=r"no cropped_aligned/y/"):
        items = cropped.items()
    assert [(it.name, it.source) for it in items] == [
        ("x_left", root / "faces/cropped_aligned/x_left"), ("x_right", root / "faces/cropped_aligned/x_right")]
    assert open_video(items[0].source).info.n_frames == 3


def test_affwild2_tracks_read_their_own_crops_by_default_and_count_frames_from_the_annotation(tmp_path):
    root = tmp_path / "aw"
    numbered_video(root / "batch1/p.mp4", 12)
    numbered_video(root / "batch1/t.mp4", 9)
    ann = root / "VA_Estimation_Challenge"
    va_file(ann / "Train_Set/p_left.txt", [(0, 0)] * 10)
    va_file(ann / "Train_Set/p_right.txt", [(0, 0)] * 12)
    touch(ann / "Test_Set/names.txt", "t\nghost\n")
    for name, n in (("p_left", 7), ("t", 4), ("ghost", 3)):
        frame_folder(root / "cropped_aligned" / name, n)
    adapter = build_adapter("aff-wild2", root)
    with pytest.warns(UserWarning, match="ghost"):
        items = by_name(adapter.items())
    assert sorted(items) == ["p_left", "p_right", "t"]
    assert adapter.skipped == [("ghost", "cropped_aligned/ghost/ but neither an annotation nor a video to count "
                                         "its frames")]
    left, right, test = items["p_left"], items["p_right"], items["t"]
    assert (left.source, left.half, left.input_kind) == (root / "cropped_aligned/p_left", None, "frame folder")
    assert (right.source, right.half, right.input_kind) == (root / "batch1/p.mp4", "right", "half frame")
    # a crop folder's length: its annotation's lines (not its 7 crops); for a test track, its video's frames
    assert (adapter.frame_count(left), adapter.frame_count(right), adapter.frame_count(test)) == (10, None, 9)
    assert adapter.load_targets(left, 10).warnings == []
    with pytest.warns(UserWarning, match=r"ghost \(no video\)"):
        assert build_adapter("aff-wild2", root, frames="video").items()[0].source == root / "batch1/p.mp4"


def test_affwild2_tracks_of_one_video_in_two_splits_are_an_error_naming_both_files(tmp_path):
    """Issue 10: `_left` in Train_Set and `_right` in Validation_Set would leak the video across splits."""
    root = tmp_path / "aw"
    touch(root / "batch1/x.mp4")
    ann = root / "VA_Estimation_Challenge"
    left, right = va_file(ann / "Train_Set/x_left.txt", [(0, 0)]), va_file(ann / "Validation_Set/x_right.txt", [(0, 0)])
    with pytest.raises(DatasetError, match=rf"x_left \(train\) and x_right \(val\).*{left}.*{right}"):
        build_adapter("aff-wild2", root).items()
    # a test list naming one track of a training video is the same conflict
    right.unlink()
    test_list = touch(tmp_path / "test.txt", "x_right\n")
    with pytest.raises(DatasetError, match=r"x_left \(train\) and x_right \(test\).*the test list"):
        build_adapter("aff-wild2", root, test_list=test_list).items()


def test_affwild2_targets_follow_video_frames(tmp_path):
    """Line k+1 of the annotation (frame k+1, 1-based) is frame k of the decoded video."""
    root = tmp_path / "aw"
    n = 40
    video = numbered_video(root / "batch1/v.mp4", n)
    va_file(root / "VA_Estimation_Challenge/Train_Set/v.txt", [(k / 100, -k / 100) for k in range(n)])
    (item,) = build_adapter("aff-wild2", root).items()
    source = open_video(item.source)
    targets = build_adapter("aff-wild2", root).load_targets(item, source.info.n_frames)
    assert targets.warnings == [] and targets.mask.all() and targets.values.dtype == np.float32
    for frame, image in source.frames(np.array([0, 1, 13, 39])):
        shown = read_frame_number(image)
        assert shown == frame
        np.testing.assert_allclose(targets.values[frame], [shown / 100, -shown / 100], atol=1e-6)
    assert video == item.source


def test_affwild2_bad_values_are_masked_and_reported(tmp_path):
    root = tmp_path / "aw"
    touch(root / "batch1/v.mp4")
    rows = [(0.5, -0.5), (-5, -5), "abc,0.1", (0.2, float("nan")), (1.5, 0.3), "0.1", (0.0, -5)]
    ann = va_file(root / "VA_Estimation_Challenge/Train_Set/v.txt", rows)
    adapter = build_adapter("aff-wild2", root)
    (item,) = adapter.items()
    t = adapter.load_targets(item, len(rows))
    np.testing.assert_array_equal(t.mask, [[1, 1], [0, 0], [0, 0], [1, 0], [0, 1], [0, 0], [1, 0]])
    np.testing.assert_allclose(t.values[t.mask], [0.5, -0.5, 0.2, 0.3, 0.0])
    assert (t.values[~t.mask] == 0).all()
    text = "\n".join(t.warnings)
    assert f"{ann}: 2 lines with non-numeric, blank or malformed values masked (line 4, 7)" in text
    assert "1 line with NaN or infinite values masked (line 5)" in text
    assert "1 line with values outside [-1, 1] masked (line 6)" in text


def test_affwild2_length_mismatch_is_reconciled_with_both_numbers(tmp_path):
    root = tmp_path / "aw"
    touch(root / "batch1/v.mp4")
    va_file(root / "VA_Estimation_Challenge/Train_Set/v.txt", [(0.1, 0.2)] * 5)
    adapter = build_adapter("aff-wild2", root)
    (item,) = adapter.items()
    short = adapter.load_targets(item, 8)
    assert short.values.shape == (8, 2) and short.mask[:5].all() and not short.mask[5:].any()
    assert any("5 annotated frames for 8 video frames" in w for w in short.warnings)
    long = adapter.load_targets(item, 3)
    assert long.values.shape == (3, 2) and long.mask.all()
    assert any("5 annotated frames for 3 video frames" in w for w in long.warnings)


def test_affwild2_missing_annotation_names_the_file(tmp_path):
    root = tmp_path / "aw"
    touch(root / "batch1/v.mp4")
    ann = va_file(root / "VA_Estimation_Challenge/Train_Set/v.txt", [(0, 0)])
    adapter = build_adapter("aff-wild2", root)
    (item,) = adapter.items()
    ann.unlink()
    with pytest.raises(DatasetError, match=f"annotation file missing: {ann}"):
        adapter.load_targets(item, 1)


def test_affwild2_header_names_the_columns(tmp_path):
    root = tmp_path / "aw"
    touch(root / "batch1/a.mp4")
    touch(root / "batch1/b.mp4")
    ann = root / "VA_Estimation_Challenge/Train_Set"
    va_file(ann / "a.txt", [(0.5, -0.25), (0.1, 0.2)], header="arousal,valence")  # swapped columns
    va_file(ann / "b.txt", ["0,0.5,-0.25", "1,0.1"], header="Frame,Valence,Arousal")  # line 3 is malformed
    adapter = build_adapter("aff-wild2", root)
    named = by_name(adapter.items())
    a = adapter.load_targets(named["a"], 2)
    np.testing.assert_allclose(a.values, [[-0.25, 0.5], [0.2, 0.1]])  # (valence, arousal)
    assert a.warnings == [] and a.mask.all()
    b = adapter.load_targets(named["b"], 2)
    np.testing.assert_allclose(b.values, [[0.5, -0.25], [0, 0]])
    assert b.mask.tolist() == [[True, True], [False, False]]
    assert any("1 line with non-numeric, blank or malformed values masked (line 3)" in w for w in b.warnings)


def test_affwild2_reports_videos_and_frame_folders_without_annotations(tmp_path):
    root = tmp_path / "aw"
    for video in ("a", "b", "expr_only_1", "expr_only_2", "pair"):
        touch(root / f"batch1/{video}.mp4")
    ann = root / "VA_Estimation_Challenge"
    for name in ("a", "pair_left"):
        va_file(ann / f"Train_Set/{name}.txt", [(0, 0)])
    touch(ann / "Test_Set/names.txt", "b\n../../etc\nsub/x\n")  # names that would reach other folders
    adapter = build_adapter("aff-wild2", root)
    with pytest.warns(UserWarning) as caught:
        items = adapter.items()
    assert [it.name for it in items] == ["a", "b", "pair_left"]
    assert adapter.unannotated == ["expr_only_1", "expr_only_2"]
    assert adapter.skipped == [("../../etc", "not a plain video name"), ("sub/x", "not a plain video name")]
    assert adapter.notices() == [
        "aff-wild2: 2 annotated names have no source and are skipped: ../../etc (not a plain video name), "
        "sub/x (not a plain video name)",
        "aff-wild2: 2 videos have no annotations and are not extracted: expr_only_1, expr_only_2"]
    assert sorted(str(w.message) for w in caught) == sorted(adapter.notices())  # each once
    for name in ("a", "pair_left", "stray"):
        frame_folder(root / "cropped_aligned" / name, 2)
    cropped = build_adapter("aff-wild2", root, frames="cropped_aligned")
    with pytest.warns(UserWarning):
        cropped.items()
    assert cropped.unannotated == ["stray"]


def test_affwild2_refuses_ambiguous_trees(tmp_path):
    root = tmp_path / "aw"
    touch(root / "batch1/v.mp4")
    touch(root / "batch2/v.avi")
    va_file(root / "VA_Estimation_Challenge/Train_Set/v.txt", [(0, 0)])
    with pytest.raises(DatasetError, match="two videos named 'v'"):
        build_adapter("aff-wild2", root).items()
    (root / "batch2/v.avi").unlink()
    va_file(root / "VA_Estimation_Challenge/Validation_Set/v.txt", [(0, 0)])
    with pytest.raises(DatasetError, match="'v' is listed twice"):
        build_adapter("aff-wild2", root).items()


# ---- dvd ----------------------------------------------------------------------------------


@pytest.mark.parametrize("per_split", [True, False], ids=["annotations-per-split", "annotations-at-root"])
def test_dvd_layouts_and_splits(tmp_path, per_split):
    root = tmp_path / "dvd"
    for split, ids in (("Training", ["t1", "t2"]), ("Validation", ["v1"]), ("Testing", ["s1", "s2"])):
        for vid in ids:
            touch(root / split / "videos" / f"{vid}.mp4")
            ann_dir = root / split / "annotations" if per_split else root / "annotations"
            if vid != "s2":
                touch(ann_dir / f"{vid}.csv", "Frame,Label\n0,0\n1,1\n")
    items = build_adapter("dvd", root).items()
    assert [(it.name, it.split) for it in items] == [("s1", "test"), ("s2", "test"), ("t1", "train"),
                                                     ("t2", "train"), ("v1", "val")]
    named = by_name(items)
    assert named["s2"].annotation is None  # unlabelled test video
    expected = (root / "Training/annotations/t1.csv") if per_split else (root / "annotations/t1.csv")
    assert named["t1"].annotation == expected


@pytest.mark.parametrize("text,expected_mask,expected_values", [
    ("Frame,Label\n0,0\n1,1\n2,1\n3,0\n", [1, 1, 1, 1], [0, 1, 1, 0]),
    ("frame_id,label\n1,1\n2,0\n3,0\n4,1\n", [1, 1, 1, 1], [1, 0, 0, 1]),  # 1-based frame numbers
    ("VIOLENCE\n0\n1\n0\n1\n", [1, 1, 1, 1], [0, 1, 0, 1]),
    ("0,1\n1,1\n3,0\n", [1, 1, 0, 1], [1, 1, 0, 0]),  # headerless frame,label; frame 2 absent
    ("time,Label\n0.0,1\n0.5,0\n1.0,1\n1.5,1\n", [1, 1, 1, 1], [1, 0, 1, 1]),
])
def test_dvd_header_variants(tmp_path, text, expected_mask, expected_values):
    root = tmp_path / "dvd"
    touch(root / "Training/videos/a.mp4")
    touch(root / "Training/annotations/a.csv", text)
    adapter = build_adapter("dvd", root)
    (item,) = adapter.items()
    t = adapter.load_targets(item, 4)
    assert t.values.shape == (4, 1)
    np.testing.assert_array_equal(t.mask[:, 0], np.array(expected_mask, bool))
    np.testing.assert_array_equal(t.values[:, 0], expected_values)


def test_dvd_bad_labels_and_lengths(tmp_path):
    root = tmp_path / "dvd"
    touch(root / "Training/videos/a.mp4")
    ann = touch(root / "Training/annotations/a.csv", "Frame,Label\n0,1\n1,2\n2,x\n3,0\n")
    adapter = build_adapter("dvd", root)
    (item,) = adapter.items()
    t = adapter.load_targets(item, 6)
    np.testing.assert_array_equal(t.mask[:, 0], [1, 0, 0, 1, 0, 0])
    assert f"{ann}: 2 lines with labels other than 0/1 masked (line 3, 4)" in t.warnings
    assert any("4 annotated frames for 6 video frames" in w for w in t.warnings)


def test_dvd_missing_annotation_names_the_expected_file(tmp_path):
    root = tmp_path / "dvd"
    touch(root / "Validation/videos/a.mp4")
    adapter = build_adapter("dvd", root)
    (item,) = adapter.items()
    with pytest.raises(DatasetError, match=f"annotation file missing: {root / 'Validation/annotations/a.csv'}"):
        adapter.load_targets(item, 3)


def test_dvd_without_split_folders(tmp_path):
    touch(tmp_path / "dvd/videos/a.mp4")
    with pytest.raises(DatasetError, match="no Training/Validation/Testing folders"):
        build_adapter("dvd", tmp_path / "dvd").items()


# ---- folder -------------------------------------------------------------------------------


def test_folder_per_video_labels_broadcast(tmp_path):
    root = tmp_path / "f"
    for name in ("a.mp4", "b.mp4", "sub/c.avi", "d.mp4", "e.mp4", "nolabel.mp4"):
        touch(root / name)
    touch(root / "labels.csv", "video,label,split\na.mp4,1,train\nb,0,val\nsub/c.avi,1,test\nd,0,\ne,1,\n")
    adapter = build_adapter("folder", root)
    assert adapter.task == "violence"
    with pytest.warns(UserWarning, match="1 videos have no labels"):
        items = adapter.items()
    named = by_name(items)
    assert sorted(named) == ["a", "b", "d", "e", "sub/c"]
    assert (named["a"].split, named["b"].split, named["sub/c"].split) == ("train", "val", "test")
    assert {named["d"].split, named["e"].split} == {"train", "val"}  # hashed: at least one val
    t = adapter.load_targets(named["sub/c"], 5)
    assert t.values.shape == (5, 1) and t.mask.all() and (t.values == 1).all()
    with pytest.warns(UserWarning, match="no labels"):
        again = adapter.items()
    assert [(it.name, it.split) for it in again] == [(it.name, it.split) for it in items]  # deterministic


def test_folder_per_video_valence_arousal(tmp_path):
    root = tmp_path / "f"
    touch(root / "a.mp4")
    touch(root / "b.mp4")
    labels = touch(tmp_path / "va.csv", "video,valence,arousal\na,0.5,-0.25\nb,0.1,2.0\n")
    with pytest.warns(UserWarning, match="1 rows with bad labels"):
        adapter = build_adapter("folder", root, labels=labels)
        assert adapter.task == "va"
    named = by_name(adapter.items())
    np.testing.assert_allclose(adapter.load_targets(named["a"], 3).values, [[0.5, -0.25]] * 3)
    tb = adapter.load_targets(named["b"], 2)
    np.testing.assert_array_equal(tb.mask, [[1, 0], [1, 0]])  # arousal 2.0 is out of range


def test_folder_labels_csv_follows_csv_quoting(tmp_path):
    root = tmp_path / "f"
    for name in ("clip, take 1.mp4", 'say "hi".mp4', "plain.mp4"):
        touch(root / name)
    touch(root / "labels.csv", 'video,label\n"clip, take 1.mp4",1\n"say ""hi""", 0\nplain,0\n"unterminated,1\n')
    adapter = build_adapter("folder", root)
    with pytest.warns(UserWarning, match=r"labels.csv: 1 rows with bad labels .* \(line 5\)"):  # a stray quote
        items = adapter.items()
    named = by_name(items)
    assert sorted(named) == ["clip, take 1", "plain", 'say "hi"']
    assert adapter.load_targets(named["clip, take 1"], 2).values.tolist() == [[1.0], [1.0]]
    assert adapter.load_targets(named['say "hi"'], 2).values.tolist() == [[0.0], [0.0]]
    assert adapter.unannotated == [] and adapter.orphans == [] and adapter.notices() == []


def test_folder_links_are_followed_once_and_loops_named(tmp_path):
    root = tmp_path / "f"
    touch(root / "a/clip.mp4")
    touch(tmp_path / "elsewhere/far.mp4")
    (root / "far").symlink_to(tmp_path / "elsewhere")  # a dataset folder linked in from another disk
    (root / "a/up").symlink_to("..")  # a loop
    (root / "again").symlink_to("a")  # a second way into a/
    (root / "looped.mp4").symlink_to("looped.mp4")  # a file link loop: found, and fails with its reason
    touch(root / "labels.csv", "video,label\na/clip,1\nfar/far,0\nlooped,1\n")
    adapter = build_adapter("folder", root)
    with pytest.warns(UserWarning) as caught:
        items = adapter.items()
    assert sorted(it.name for it in items) == ["a/clip", "far/far", "looped"]
    assert adapter.notices() == [f"{root / 'again'}: links to {root / 'a'}, which is searched already; not "
                                 "entered twice", f"{root / 'a/up'}: a symbolic link loop back to {root}; not entered again"]
    assert [str(w.message) for w in caught] == adapter.notices()
    with pytest.raises(Exception, match=r"looped.mp4: a symbolic link loop \(.*looped.mp4 -> looped.mp4\)"):
        open_video(by_name(items)["looped"].source)


@pytest.mark.parametrize("header,rows,task", [
    ("frame,valence,arousal", ["0,0.1,0.2", "1,0.3,0.4"], "va"),
    ("label", ["1", "0"], "violence"),
    ("", ["0,1", "1,0"], "violence"),
])
def test_folder_per_frame_csvs(tmp_path, header, rows, task):
    root = tmp_path / "f"
    touch(root / "clips/a.mp4")
    touch(root / "annotations/clips/a.csv", "\n".join(([header] if header else []) + rows) + "\n")
    adapter = build_adapter("folder", root)
    assert adapter.task == task
    (item,) = adapter.items()
    t = adapter.load_targets(item, 3)
    assert t.mask[:2].all() and not t.mask[2].any()
    assert any("2 annotated frames for 3 video frames" in w for w in t.warnings)
    expected = [[0.1, 0.2], [0.3, 0.4]] if task == "va" else [[1], [0]]
    np.testing.assert_allclose(t.values[:2], expected, rtol=1e-6)


def test_folder_without_labels(tmp_path):
    touch(tmp_path / "f/a.mp4")
    with pytest.raises(DatasetError, match="no labels.csv and no per-frame CSVs"):
        _ = build_adapter("folder", tmp_path / "f").task
    with pytest.raises(DatasetError, match="labels file not found"):
        build_adapter("folder", tmp_path / "f", labels=tmp_path / "nope.csv").items()


def test_folder_task_inference_survives_nan_frame_numbers(tmp_path):
    from fgvu.extract.datasets.folder import _frame_table_task

    table = tmp_path / "v.csv"
    table.write_text("0,1\nnan,1\n2,0\n")
    assert _frame_table_task(table) == "va"  # not integer frame numbers: not a frame,label table
    table.write_text("0,1\n1,1\n2,0\n")
    assert _frame_table_task(table) == "violence"


@pytest.mark.parametrize("task", ["va", "violence"])
def test_folder_task_option_comes_from_the_task_registry(tmp_path, task):
    from fgvu.tasks import TASKS

    with pytest.raises(DatasetError, match=f"folder: task must be one of {', '.join(TASKS)}, got 'emotion'"):
        build_adapter("folder", tmp_path, task="emotion")
    adapter = build_adapter("folder", tmp_path, task=task)
    assert adapter.task == task
    unlabelled = adapter.load_targets(VideoItem("x", tmp_path / "x.mp4", "test", None), 4)
    assert unlabelled.values.shape == unlabelled.mask.shape == (4, len(TASKS[task].targets))
    assert not unlabelled.mask.any()


def test_folder_task_option_must_fit_the_labels(tmp_path):
    touch(tmp_path / "f/a.mp4")
    touch(tmp_path / "f/labels.csv", "video,valence,arousal\na,0.5,0.5\n")
    with pytest.raises(DatasetError, match="labels look like task 'va' but task='violence' was given"):
        build_adapter("folder", tmp_path / "f", task="violence").items()


# ---- caption prompts ----------------------------------------------------------------------


def test_each_adapter_asks_the_captioner_about_its_task():
    from fgvu.extract.datasets import DatasetAdapter

    assert "valence" in ADAPTERS["aff-wild2"].default_prompt and "arousal" in ADAPTERS["aff-wild2"].default_prompt
    assert "violent" in ADAPTERS["dvd"].default_prompt
    assert ADAPTERS["folder"].default_prompt == "Describe what is happening in this image."
    assert DatasetAdapter.default_prompt == "Describe this image briefly."
    assert len({cls.default_prompt for cls in ADAPTERS.values()}) == len(ADAPTERS)


def test_an_adapter_without_a_prompt_of_its_own_gets_the_generic_one(tmp_path):
    from fgvu.extract.datasets import DatasetAdapter

    class Plain(DatasetAdapter):
        name, task = "plain", "va"

        def items(self):
            return []

        def load_targets(self, item, n_frames):
            return self.unlabelled(n_frames)

    assert Plain(tmp_path).default_prompt == DatasetAdapter.default_prompt


@pytest.mark.parametrize("dataset", ["aff-wild2", "dvd", "folder"])
def test_caption_prompt_is_the_adapters_unless_given(tmp_path, dataset):
    from fgvu.extract.config import ExtractConfig
    from fgvu.extract.pipeline import caption_prompt

    adapter = build_adapter(dataset, tmp_path)
    cfg = ExtractConfig(dataset=dataset, root=str(tmp_path))
    assert caption_prompt(cfg, adapter, None) == ADAPTERS[dataset].default_prompt
    given = ExtractConfig(dataset=dataset, root=str(tmp_path), caption_prompt="Describe the face.")
    assert caption_prompt(given, adapter, None) == "Describe the face."
