"""--engine ray on a local Ray cluster (started once for the module, 2 CPUs): the local engine's cache,
array for array; a kill -9 of an encoder actor and a raising encoder mid-run change nothing; tasks
that keep failing are listed, not recorded; checks and errors come from the driver, in one line;
`fgvu ablations --engine ray` gives the local runner's runs.

Encoders are the fakes (built in the actors from tests/fakes.py); decoding is real (PyAV).
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from fakes import build_fake_encoder, fake_encoders, write_affwild2
from helpers import assert_same_cache, torch_threads
from fgvu.cache import committed_videos
from fgvu.extract.config import ExtractConfig
from fgvu.extract.pipeline import run_extract
from fgvu.sampling import SamplingPlan

ray = pytest.importorskip("ray")

TESTS = Path(__file__).resolve().parent
VIDEOS = {f"v{i}": 60 + 41 * i for i in range(6)} | {"pair": 150}
BATCHES = {"image_batch": 16, "caption_batch": 2, "text_batch": 3, "clip_batch": 4, "video_frames": (8, 16)}


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster whose workers import this checkout and tests/fakes.py."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [saved])])
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Aff-Wild2 files with a shared _left/_right source, a missing annotation and a corrupt video,
    and the local engine's cache of them in 2 parts."""
    tmp = tmp_path_factory.mktemp("ray")
    root = write_affwild2(tmp / "data", VIDEOS, left_right=("pair",))
    (root / "batch1" / "v4.mp4").write_bytes(b"not a video")
    annotation = root / "VA_Estimation_Challenge" / "Train_Set" / "pair_right.txt"
    annotation.unlink()
    annotation.mkdir()  # listed, but unreadable: pair_right fails on its targets, pair_left is written
    local = tmp / "local"
    summary = run_extract(_cfg(root, local, engine="local"), encoders=fake_encoders())
    assert (summary.succeeded, summary.failed) == (6, 2)
    return root, local, summary


def _cfg(root, out, **kw) -> ExtractConfig:
    return ExtractConfig(**{"dataset": "aff-wild2", "root": str(root), "out": str(out), "progress": False,
                            "parts": 2, "engine": "ray", **BATCHES, **kw})


def _run(cfg, **build):
    from fgvu.extract.ray_engine import run_ray

    return run_ray(cfg, build=functools.partial(build_fake_encoder, **build) if build else build_fake_encoder)


def test_same_cache_as_the_local_engine_with_relative_paths(cluster, dataset, tmp_path, monkeypatch):
    root, local, expected = dataset
    monkeypatch.chdir(tmp_path)  # the workers run elsewhere: relative paths must mean what they mean here
    summary = _run(_cfg(os.path.relpath(root, tmp_path), "rel/cache"))
    assert summary.out == tmp_path / "rel" / "cache"
    assert_same_cache(tmp_path / "rel" / "cache", local)
    for name in ("succeeded", "failed", "skipped", "windows", "frames", "warnings", "counts", "failures"):
        assert getattr(summary, name) == getattr(expected, name), name
    assert summary.lost == [] and summary.parts == [0, 1]
    assert summary.seconds > 0 and summary.startup_seconds > 0
    assert set(summary.busy) == {"decode", "video", "captioner", "image"} and summary.busy["decode"] > 0
    lines = "\n".join(summary.lines())
    assert "6 videos extracted, 2 failed" in lines and "Ray start-up" in lines and "busy: decode" in lines


def test_a_killed_actor_and_a_raising_encoder_change_nothing(cluster, dataset, tmp_path):
    root, local, _ = dataset
    pids, killed = tmp_path / "pids", []

    def kill_the_video_actor() -> None:
        # the probe task builds every encoder first (and exits); the second video build is the actor's
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            builds = sorted(pids.glob("video-*")) if pids.exists() else []
            if len(builds) >= 2:
                time.sleep(1.0)  # let it encode a little first
                pid = int(builds[1].read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_video_actor)
    killer.start()
    summary = _run(_cfg(root, tmp_path / "cache", max_retries=2), delay=0.05, pid_dir=str(pids),
                   fail_once=str(tmp_path / "failed-once"))
    killer.join()
    assert killed, "the video actor was never killed"
    assert len(list(pids.glob("video-*"))) >= 3, "no new video actor replaced the killed one"
    assert (tmp_path / "failed-once").exists()  # the image encoder raised once, and was retried
    assert summary.lost == [] and (summary.succeeded, summary.failed) == (6, 2)
    assert_same_cache(tmp_path / "cache", local)


def test_tasks_that_keep_failing_are_listed_not_recorded_and_rerun(cluster, dataset, tmp_path):
    root, _, _ = dataset
    plan = SamplingPlan(video_frames=BATCHES["video_frames"])
    image_rows = {name: len(plan.layout(n).image_frames) for name, n in VIDEOS.items()}
    assert list(image_rows.values()).count(image_rows["v3"]) == 1
    cfg = _cfg(root, tmp_path / "cache", max_retries=1, image_batch=512)  # one image call per video
    summary = _run(cfg, fail_batch=image_rows["v3"])
    assert [name for name, _ in summary.lost] == ["v3"]
    assert "failed 2 times" in summary.lost[0][1]
    assert "v3" not in {name for name, _ in summary.failures}  # not recorded: a re-run retries it
    assert summary.succeeded == 5 and "v3" not in set(committed_videos(tmp_path / "cache"))
    assert any("still failed after their retries" in line for line in summary.lines())

    again = _run(cfg)
    assert (again.succeeded, again.skipped) == (1, 5) and again.lost == []
    assert "v3" in set(committed_videos(tmp_path / "cache"))


def test_a_bad_encoder_is_one_line_from_the_probe(cluster, dataset, tmp_path):
    from fgvu.extract.encoders.base import EncoderError
    from fgvu.extract.ray_engine import run_ray

    root, _, _ = dataset
    with pytest.raises(EncoderError) as error:
        run_ray(_cfg(root, tmp_path / "cache", encoders="tiny", audio_encoder="none", video_encoder="videoprism-nope"))
    assert "unknown video encoder 'videoprism-nope'" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "cache").exists()  # nothing started, nothing written


def test_a_bad_root_is_the_local_error_before_ray_starts(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from fgvu.cli import app
    from fgvu.errors import FgvuError

    def no_ray(ray):
        raise AssertionError("Ray must not start before the dataset is checked")

    monkeypatch.setattr("fgvu.extract.ray_engine.init_ray", no_ray)
    errors = {}
    for engine in ("local", "ray"):
        result = CliRunner().invoke(app, ["extract", "--dataset", "aff-wild2", "--engine", engine, "--root",
                                          str(tmp_path / "missing"), "--out", str(tmp_path / "c"), "--quiet"])
        assert isinstance(result.exception, FgvuError), result.output
        errors[engine] = str(result.exception)
    assert errors["ray"] == errors["local"] and str(tmp_path / "missing") in errors["ray"]
    assert not (tmp_path / "c").exists()


def test_ablations_on_ray_match_the_local_runner(cluster, tmp_path):
    from fgvu.ablations.grid import Ablation, Grid
    from fgvu.ablations.runner import run_ablations
    from fgvu.synth.features import write_feature_cache

    cache = write_feature_cache(tmp_path / "features", "va", videos=8, frames=160, dims=16)
    grid = Grid((Ablation("full", "reference"), Ablation("concat", "fusion", model={"fusion": "concat"})),
                base_fit={"epochs": 2, "batch_size": 32, "patience": 2},
                base_model={"d_model": 16, "heads": 2, "mlp_hidden": 16})
    quiet = {"progress": False, "log": lambda *_: None}
    with torch_threads(1):  # what a local worker process and a Ray task both use
        _, local, _ = run_ablations(cache, tmp_path / "local", grid, seeds=1, jobs=1, **quiet)
    _, remote, files = run_ablations(cache, tmp_path / "ray", grid, seeds=1, engine="ray", **quiet)
    assert [r.status for r in remote] == ["done", "done"]
    for a, b in zip(local, remote):
        assert a.run.name == b.run.name and a.metrics["val"] == b.metrics["val"]
    assert (tmp_path / "ray" / "runs" / "concat-s0" / "metrics.json").is_file() and files["markdown"].is_file()
    _, resumed, _ = run_ablations(cache, tmp_path / "ray", grid, seeds=1, engine="ray", **quiet)
    assert [r.status for r in resumed] == ["resumed", "resumed"]


def test_user_errors_are_found_inside_rays_wrappers():
    from fgvu.extract.encoders.base import EncoderError
    from fgvu.extract.ray_engine import user_error

    class Wrapped(Exception):  # Ray's task errors carry the original as `.cause`
        def __init__(self, cause):
            super().__init__("Traceback (most recent call last): ...")
            self.cause = cause

    original = EncoderError("the video encoder on node-3 has other weights")
    try:
        try:
            raise Wrapped(original)
        except Wrapped as wrapped:
            raise RuntimeError("the dataset failed") from wrapped
    except RuntimeError as error:
        assert user_error(error) is original
    assert user_error(RuntimeError("a bug")) is None
