"""One read-only copy of a cache's arrays for the ablation workers (fgvu.cache.shared)."""

import json
import os

import numpy as np
import pytest

from fgvu.ablations.grid import Ablation, Grid
from fgvu.ablations.runner import plan_grid, run_grid
from fgvu.cache import CacheError, open_cache
from fgvu.cache import shared as shared_mod
from fgvu.cache.shared import PREFIX, choose_base, open_shared, share_cache
from fgvu.fusion.config import FitConfig, ModelConfig
from fgvu.fusion.train import fit
from fgvu.sampling import SamplingPlan
from fgvu.synth.features import write_feature_cache
from helpers import torch_threads

TINY_MODEL = ModelConfig(d_model=16, mlp_hidden=16, heads=2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return write_feature_cache(tmp_path_factory.mktemp("shared") / "c", videos=8, frames=160, seed=3, dims=12,
                               plan=SamplingPlan(video_frames=(8, 16)))


def _same_view(a, b) -> None:
    for key in ("window_video", "window_start", "valid", "targets", "target_mask"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    for key in a.videos.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a.videos, key), getattr(b.videos, key))
    assert a.arrays.keys() == b.arrays.keys()
    for key, value in a.arrays.items():
        if isinstance(value, dict):
            assert value.keys() == b.arrays[key].keys()
            for t in value:
                np.testing.assert_array_equal(value[t], b.arrays[key][t])
        else:
            np.testing.assert_array_equal(value, b.arrays[key])


def test_workers_view_equals_a_private_one_and_is_mapped_read_only(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(shared_mod, "SHM", tmp_path / "no-shm")  # force the folder under the fallback
    with share_cache(cache, {"v", "i"}, {16}, fallback=tmp_path / "out") as shared:
        assert shared.folder.parent == tmp_path / "out" and shared.folder.name.startswith(f"{PREFIX}{os.getpid()}-")
        view = open_shared(shared.folder)
        _same_view(view, open_cache(cache, modalities=("v", "i"), video_frames=(16,)))
        for table in (view.video[16], view.image, view.targets):
            assert isinstance(table, np.memmap) and not table.flags.writeable
        assert shared.nbytes >= view.video[16].nbytes + view.image.nbytes
    assert not shared.folder.exists()


def test_dev_shm_only_with_room_and_stale_folders_go(tmp_path, monkeypatch):
    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setattr(shared_mod, "SHM", shm)
    monkeypatch.setattr(shared_mod, "_memory_available", lambda: 10_000)
    assert choose_base(4_000, tmp_path / "disk") == shm
    assert choose_base(6_000, tmp_path / "disk") == tmp_path / "disk"  # over half of the available memory
    dead, alive = shm / f"{PREFIX}999999999-abc", shm / f"{PREFIX}{os.getpid()}-abc"
    dead.mkdir()
    alive.mkdir()
    shared_mod._remove_stale(shm)
    assert not dead.exists() and alive.exists()


def test_a_folder_that_no_longer_matches_its_cache_is_refused(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(shared_mod, "SHM", tmp_path / "no-shm")
    with share_cache(cache, {"v"}, {8}, fallback=tmp_path) as shared:
        manifest = json.loads((shared.folder / "manifest.json").read_text())
        (shared.folder / "manifest.json").write_text(json.dumps({**manifest, "arrays": manifest["arrays"][:-1]}))
        with pytest.raises(CacheError, match="no longer match"):
            open_shared(shared.folder)


def test_shared_memory_workers_give_the_results_of_private_copies(cache, tmp_path, monkeypatch):
    made = []

    def recording_share(*args, **kwargs):
        made.append(share_cache(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(shared_mod, "share_cache", recording_share)
    grid = Grid((Ablation("full", "reference"), Ablation("video-8", "sampling", fit={"video_frames": 8})),
                base_fit={"epochs": 2, "batch_size": 16}, base_model=TINY_MODEL.to_dict())
    plan = plan_grid(cache, grid, seeds=1)
    results = run_grid(plan, tmp_path / "grid", jobs=2, progress=False, log=lambda *_: None)
    assert [r.status for r in results] == ["done", "done"]
    # one copy of both runs' arrays (clips of 8 and 16 frames), removed after the grid
    assert len(made) == 1 and not made[0].folder.exists()
    full = open_cache(cache)
    assert made[0].nbytes >= full.video[8].nbytes + full.video[16].nbytes + full.image.nbytes + full.text.nbytes
    with torch_threads(2):  # fit sets its own thread count whatever the caller's
        for r in results:
            private = fit(cache, r.run.fit, tmp_path / "private" / r.run.name, progress=False)
            assert private["val"] == r.metrics["val"] and private["best_epoch"] == r.metrics["best_epoch"]
            worker_meta = json.loads((r.run_dir / "config.json").read_text())
            assert worker_meta["threads"] == 1  # one thread per worker, and recorded
            assert FitConfig.from_dict(worker_meta["fit"]) == r.run.fit
