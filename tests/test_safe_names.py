"""Video names never pick where a file goes: crafted names stay inside --out, nested split folders work."""

from urllib.parse import unquote

import numpy as np
import pytest

from fakes import FakeAdapter, fake_encoders, write_video
from fgvu.extract.config import ExtractConfig
from fgvu.extract.datasets import VideoItem
from fgvu.extract.pipeline import run_extract
from fgvu.fusion.config import FitConfig, ModelConfig
from fgvu.fusion.evaluate import predict
from fgvu.fusion.train import fit
from fgvu.safe_names import MAX_NAME_BYTES, UnsafeNameError, file_in, safe_file_name

CRAFTED = ["../../ESCAPED", "/tmp/absolute", "test/d", "a\\b", "..", ".", ".hidden", "100%", "a%2Fb",
           "tab\there", "new\nline"]
TINY = FitConfig(model=ModelConfig(d_model=16, mlp_hidden=16, heads=2), epochs=1, batch_size=16)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", ["12-24-1920x1080_left", "video_59", "clip 3 (take 2)", "vidéo-ünïcode", "a.b"])
def test_plain_names_are_kept(name):
    assert safe_file_name(name, ".csv") == f"{name}.csv"


def test_crafted_names_become_one_reversible_file_name_each(tmp_path):
    files = [safe_file_name(name) for name in CRAFTED]
    assert len(set(files)) == len(CRAFTED)  # "a/b"-like names and their encoded spelling never share a file
    for name, file in zip(CRAFTED, files):
        assert "/" not in file and "\\" not in file and not file.startswith(".") and file.isprintable()
        assert unquote(file) == name
        assert file_in(tmp_path, name, ".txt").parent == tmp_path
    assert safe_file_name("../../ESCAPED") == "%2E.%2F..%2FESCAPED"


def test_names_that_cannot_be_file_names_are_refused():
    with pytest.raises(UnsafeNameError, match="empty name"):
        safe_file_name("")
    with pytest.raises(UnsafeNameError, match="too long"):
        safe_file_name("x" * (MAX_NAME_BYTES - 3), ".csv")
    assert safe_file_name("x" * (MAX_NAME_BYTES - 4), ".csv")


class NamedAdapter(FakeAdapter):
    """Fake videos of 120 frames under the given names, each in its given split."""

    def __init__(self, splits: dict[str, str]):
        super().__init__({name: (f"{i}.mp4", 120) for i, name in enumerate(splits)})
        self.splits = splits

    def items(self):
        return [VideoItem(it.name, it.source, self.splits[it.name], it.annotation) for it in super().items()]


def test_predict_keeps_crafted_cache_names_inside_out(tmp_path, monkeypatch):
    splits = {**{name: "test" for name in CRAFTED}, **{f"train-{i}": "train" for i in range(4)}, "val-0": "val"}
    adapter = NamedAdapter(splits)
    monkeypatch.setattr("fgvu.extract.video_source.open_video", adapter.open_video)
    cache = tmp_path / "cache"
    summary = run_extract(ExtractConfig(dataset="aff-wild2", out=str(cache), progress=False),
                          encoders=fake_encoders(), adapter=adapter)
    assert summary.succeeded == len(splits)
    run = tmp_path / "run"
    fit(cache, TINY, run, progress=False)
    out = tmp_path / "deep" / "er" / "pred"
    written = predict(run, out, split="test")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    assert {p.parent for p in written} == {out} and len(written) == len(CRAFTED)
    assert sorted(unquote(p.stem) for p in written) == sorted(CRAFTED)
    escaped = out / "%2E.%2F..%2FESCAPED.txt"
    rows = escaped.read_text().splitlines()
    assert rows[1].startswith("../../ESCAPED/00001.jpg,") and len(rows) == 121  # the real name inside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "deep", "run"]  # nothing escaped


def test_nested_split_folders_of_the_folder_layout_predict(tmp_path):
    root = tmp_path / "data"
    names = {"train/a": 1, "train/b": 0, "train/c": 1, "train/e": 0, "val/v": 1, "test/d": 0, "test/sub/f": 1}
    for i, name in enumerate(names):
        write_video(root / f"{name}.mp4", 70, seed=i)
    (root / "labels.csv").write_text("video,label\n" + "".join(f"{n},{y}\n" for n, y in names.items()))
    cache = tmp_path / "cache"
    run_extract(ExtractConfig(dataset="folder", root=str(root), out=str(cache), progress=False),
                encoders=fake_encoders())
    run = tmp_path / "run"
    fit(cache, TINY, run, progress=False)
    written = predict(run, tmp_path / "pred", split="test")
    assert sorted(p.name for p in written) == ["test%2Fd.csv", "test%2Fsub%2Ff.csv"]
    table = np.loadtxt(tmp_path / "pred" / "test%2Fd.csv", delimiter=",", skiprows=1)
    assert table.shape == (70, 3) and list(table[:, 0]) == list(range(70))  # frame, label, P(violent)
    assert set(np.unique(table[:, 1])) <= {0, 1}
