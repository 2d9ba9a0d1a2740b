"""Caches on an object store: extraction to s3://, leases, kill -9 then re-run, verify, against a local moto server.

The S3-compatible server (moto's server mode) runs in this process on 127.0.0.1 at a free port;
nothing leaves the machine. fsspec finds it through the AWS_* environment variables, as a user's
store would be found. Skipped when moto or s3fs is not installed (`pip install 'fgvu[test]'`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from fakes import fake_encoders, write_affwild2  # noqa: E402
from helpers import assert_same_cache  # noqa: E402
from cache_helpers import make_spec, record  # noqa: E402
from fgvu.cache import CacheError, PartWriter, cache_fingerprint, open_cache  # noqa: E402
from fgvu.cache.location import StorePath, cache_path  # noqa: E402
from fgvu.cache.ownership import acquire_part  # noqa: E402
from fgvu.cache.tools import cache_info  # noqa: E402
from fgvu.cache.verify import verify_cache  # noqa: E402
from fgvu.extract.config import ExtractConfig  # noqa: E402
from fgvu.extract.pipeline import run_extract  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
BUCKET = "fgvu-test"
VIDEOS = {"v0": 70, "v1": 107, "v2": 90, "v3": 60}


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 (its own process, so it serves while this one works), the
    AWS_* variables pointing at it, and one bucket."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        _wait_for(port, server)
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.kill()
        server.wait()


def _wait_for(port: int, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the moto server exited with {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"the moto server did not listen on 127.0.0.1:{port} within {timeout} s")


def _url(name: str) -> str:
    return f"s3://{BUCKET}/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_affwild2(tmp_path_factory.mktemp("data"), VIDEOS)


@pytest.fixture(scope="module")
def local_cache(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "cache"
    run_extract(ExtractConfig(dataset="aff-wild2", root=str(dataset), out=str(out), progress=False, parts=2),
                encoders=fake_encoders())
    return out


@pytest.fixture(scope="module")
def s3_cache(s3, dataset):
    url = _url("cache")
    summary = run_extract(ExtractConfig(dataset="aff-wild2", root=str(dataset), out=url, progress=False, parts=2),
                          encoders=fake_encoders())
    assert summary.succeeded == len(VIDEOS)
    return url


def test_extract_to_s3_equals_a_local_extraction(s3_cache, local_cache):
    assert_same_cache(s3_cache, local_cache)  # every array, caption and failure
    view = open_cache(s3_cache)
    assert len(view.videos) == len(VIDEOS) and view.image.shape[0] > 0
    assert cache_fingerprint(s3_cache) == cache_fingerprint(local_cache)
    store = StorePath(s3_cache)
    keys = store.files()
    assert any(k.endswith("parts/part-00001.zarr/commit.json") for k in keys)
    assert not any(k.endswith((".tmp", ".partial")) for k in keys)  # one PUT per object, no temporaries
    info = cache_info(s3_cache)
    assert info["path"] == s3_cache and info["parts"] == 2 and info["bytes"] == sum(keys.values())


def test_verify_on_the_url_finds_a_damaged_shard(s3_cache):
    url = _url("damaged")
    source = StorePath(s3_cache)
    source.fs.copy(source.key, StorePath(url).key, recursive=True)  # a copy to damage (server-side)
    assert verify_cache(url) == []
    from typer.testing import CliRunner

    from fgvu.cli import app

    result = CliRunner().invoke(app, ["cache", "verify", url])
    assert result.exit_code == 0 and f"cache {url}: ok" in result.output  # not s3:/...
    shard = next(k for k in StorePath(url).files() if "/frames/image/c/" in k)
    target = StorePath("s3://" + shard)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    problems = verify_cache(url)
    assert problems and any("frames/image" in p for p in problems), problems
    result = CliRunner().invoke(app, ["cache", "verify", url])
    assert result.exit_code == 1 and url in result.output


def test_a_second_writer_on_the_same_part_is_refused(s3):
    url, spec = _url("owned"), make_spec()
    with PartWriter(url, spec, 0, parts=2) as first:
        first.append_video(record("a", 200, 0))
        with pytest.raises(CacheError, match="part-00000.zarr is being written by another process"):
            PartWriter(url, spec, 0, parts=2)
        with PartWriter(url, spec, 1, parts=2) as other_part:  # another part is free
            other_part.append_video(record("b", 150, 1))
    with PartWriter(url, spec, 0, parts=2) as again:  # released on close: the next writer starts at once
        assert again.committed_videos == {"a"}


def test_of_writers_racing_for_a_part_exactly_one_wins(s3):
    url = cache_path(_url("race"))
    part = url / "parts" / "part-00000.zarr"
    barrier, won, refused = threading.Barrier(6), [], []

    def take():
        barrier.wait()
        try:
            won.append(acquire_part(url, part))
        except CacheError as e:
            refused.append(str(e))

    threads = [threading.Thread(target=take) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 5, refused
    won[0].release()


def test_a_writer_that_lost_its_lease_commits_nothing(s3):
    url, spec = _url("lost"), make_spec()
    stalled = PartWriter(url, spec, 0, lease_seconds=1, buffer_bytes=1 << 30)
    stalled._lock._stop.set()  # a writer paused past its lease: it no longer renews
    stalled._lock._thread.join()
    time.sleep(1.2)
    with PartWriter(url, spec, 0) as successor:
        successor.append_video(record("b", 150, 1))
    with pytest.raises(CacheError, match="lost the lease on part-00000.zarr"):
        stalled.append_video(record("a", 200, 0))  # its flush checks the lease before writing any row
    stalled.close()
    view = open_cache(url)
    assert view.videos.name.tolist() == ["b"] and verify_cache(url) == []
    assert np.array_equal(view.targets, record("b", 150, 1).targets.astype(np.float32))


DRIVER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from fakes import fake_encoders
    from fgvu.cache import PartWriter
    from fgvu.extract.config import ExtractConfig
    from fgvu.extract.pipeline import run_extract

    append = PartWriter._append
    def slow_append(self, name, values):  # widen the window in which a kill lands mid-video
        append(self, name, values)
        time.sleep(0.02)
    PartWriter._append = slow_append
    cfg = ExtractConfig(dataset="aff-wild2", root={root!r}, out={out!r}, progress=False, parts=2,
                        lease_seconds=6)
    s = run_extract(cfg, encoders=fake_encoders())
    print("done", s.succeeded, s.skipped, flush=True)
""")


def test_kill_9_then_rerun_equals_a_clean_run(s3, dataset, local_cache):
    """Part 0 (v2, v3) is killed after its first commit; the re-run finishes it and part 1 (v0, v1)."""
    url = _url("killed")
    commit = StorePath(url) / "parts" / "part-00000.zarr" / "commit.json"
    driver = DRIVER.format(tests=str(TESTS), root=str(dataset), out=url)
    run = [sys.executable, "-c", driver]
    proc = subprocess.Popen(run, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and \
            not (commit.exists() and '"videos": 1' in commit.read_text()):
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = open_cache(url, allow_partial=True).videos.name.tolist()
    assert 1 <= len(committed) < len(VIDEOS)
    # the dead writer's lease still holds the part: a writer at once is refused, and told when to retry
    part = StorePath(url) / "parts" / "part-00000.zarr"
    lease = json.loads(sorted((part / "leases").glob("lease-*.json"))[-1].read_text())
    assert lease["pid"] == proc.pid and lease["expires"] > time.time(), lease
    with pytest.raises(CacheError, match=rf"being written by another process \(pid {proc.pid} on .*re-run after the "):
        acquire_part(url, part)
    while lease["expires"] > time.time():  # re-read: a renewal in flight at the kill may land after it
        time.sleep(lease["expires"] - time.time() + 0.05)
        lease = json.loads(sorted((part / "leases").glob("lease-*.json"))[-1].read_text())
    proc = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (lease, proc.stderr[-2000:])
    _, succeeded, skipped = proc.stdout.split()
    assert int(skipped) == len(committed) and int(succeeded) + int(skipped) == len(VIDEOS)
    assert_same_cache(url, local_cache)
    assert verify_cache(url) == []


def test_fit_on_the_url_equals_fit_on_the_local_copy(s3, tmp_path):
    from typer.testing import CliRunner

    from fgvu.cli import app
    from fgvu.synth.features import write_feature_cache
    from helpers import torch_threads

    local = write_feature_cache(tmp_path / "va", videos=8, frames=200, seed=0, dims=16)
    url = _url("fit")
    store = StorePath(url)
    store.fs.put(str(local), store.key, recursive=True)
    assert cache_fingerprint(url) == cache_fingerprint(local)
    tiny = ["--modalities", "i,t", "--fusion", "concat", "--epochs", "1", "--d-model", "16", "--mlp-hidden", "16",
            "--heads", "2", "--quiet"]
    runs = {}
    with torch_threads(1):
        for name, cache in (("local", str(local)), ("s3", url)):
            runs[name] = tmp_path / f"run-{name}"
            result = CliRunner().invoke(app, ["fit", cache, "--out", str(runs[name]), *tiny])
            assert result.exit_code == 0, result.output
    assert json.loads((runs["s3"] / "config.json").read_text())["cache"] == url  # the URL, not s3:/...
    metrics = [json.loads((runs[n] / "metrics.json").read_text()) for n in ("local", "s3")]
    assert metrics[0]["val"] == metrics[1]["val"] and metrics[0]["select"] == metrics[1]["select"]
    assert 0 < abs(metrics[1]["val"]["ccc_mean"]) <= 1 and metrics[1]["n_val_videos"] == 2
    # every command that reads a cache takes the URL: evaluate (the run's own cache, and --cache), ablations
    evals = {}
    for name, cache in (("local", str(local)), ("s3", url)):
        result = CliRunner().invoke(app, ["evaluate", str(runs[name]), "--cache", cache])
        assert result.exit_code == 0, result.output
        evals[name] = json.loads((runs[name] / "eval.json").read_text())
    assert evals["s3"]["metrics"] == evals["local"]["metrics"]
    result = CliRunner().invoke(app, ["evaluate", str(runs["s3"])])
    assert result.exit_code == 0 and "s3:/" + "/" in result.output, result.output
    grid = tmp_path / "grid.toml"
    grid.write_text('reference = "i"\n[base]\nepochs = 1\n[base.model]\nmodalities = ["i", "t"]\nfusion = "concat"\n'
                    'd_model = 16\nmlp_hidden = 16\nheads = 2\n[configs.i]\nmodel = { modalities = ["i"] }\n'
                    '[configs.it]\n')
    with torch_threads(1):
        result = CliRunner().invoke(app, ["ablations", url, "--grid", str(grid), "--out", str(tmp_path / "abl"),
                                          "--seeds", "1", "--jobs", "1", "--quiet"])
    assert result.exit_code == 0 and "2 runs finished, 0 failed" in result.output, result.output
    ran = json.loads((tmp_path / "abl" / "runs" / "it-s0" / "config.json").read_text())
    assert ran["cache"] == url
