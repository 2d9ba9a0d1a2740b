"""kill -9 at any moment, then re-run: the cache equals an uninterrupted run, array by array.

The extraction runs in a subprocess on real video files (PyAV) with fake encoders. The
subprocess slows each array write a little, so the kills land inside appends as well as
between them; the test checks that at least one kill left uncommitted rows behind, which
the next run must truncate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path


from fakes import fake_encoders, write_affwild2
from helpers import assert_same_cache
from fgvu.cache import part_dirs
from fgvu.extract.config import ExtractConfig
from fgvu.extract.pipeline import run_extract

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

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
        time.sleep(0.01)
    PartWriter._append = slow_append
    {setup}
    cfg = ExtractConfig(dataset="aff-wild2", root={root!r}, out={out!r}, progress=False, parts={parts}, part={part})
    s = run_extract(cfg, encoders=fake_encoders())
    print("done", s.succeeded, s.skipped, flush=True)
""")


def _committed(out: Path) -> int:
    total = 0
    for part in part_dirs(out):
        if (part / "commit.json").exists():
            total += json.loads((part / "commit.json").read_text())["rows"]["videos"]
    return total


def _uncommitted_rows(out: Path) -> bool:
    """True when some array holds rows past its part's commit (what a mid-append kill leaves)."""
    import zarr

    for part in part_dirs(out):
        rows = json.loads((part / "commit.json").read_text())["rows"] if (part / "commit.json").exists() else None
        if rows is None:
            continue
        group = zarr.open_group(part, mode="r", zarr_format=3)
        if "windows/start" in group and group["windows/start"].shape[0] > rows["windows"]:
            return True
        if "frames/image" in group and group["frames/image"].shape[0] > rows["image"]:
            return True
    return False


def _kill_after_a_commit(driver: str, out: Path, before: int, delay: float) -> int:
    """Run `driver`, wait until it commits past `before` videos, then `delay` s, and kill -9 it.
    Returns 1 if the kill landed (0 when the run had already ended)."""
    proc = subprocess.Popen([sys.executable, "-c", driver], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 60
    while _committed(out) <= before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return int(killed)


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    videos = {f"v{i}": 70 + 37 * i for i in range(7)} | {"pair": 160}
    root = write_affwild2(tmp_path / "data", videos, left_right=("pair",))
    (root / "batch1" / "v3.mp4").write_bytes(b"")  # one failure, which must be recorded the same way
    n_items = len(videos) + 1
    clean = tmp_path / "clean"
    run_extract(ExtractConfig(dataset="aff-wild2", root=str(root), out=str(clean), progress=False),
                encoders=fake_encoders())
    assert _committed(clean) == n_items - 1

    out = tmp_path / "killed"
    driver = DRIVER.format(tests=str(TESTS), root=str(root), out=str(out), parts=1, part=0, setup="")
    kills, mid_append = 0, 0
    delays = [0.0, 0.13, 0.29, 0.07, 0.21]
    for delay in delays:
        before = _committed(out)
        if before >= n_items - 2:
            break
        kills += _kill_after_a_commit(driver, out, before, delay)
        mid_append += _uncommitted_rows(out)
    assert kills >= 2 and _committed(out) >= 1
    assert mid_append >= 1, "no kill landed inside an append; the truncation path was not exercised"
    proc = subprocess.run([sys.executable, "-c", driver], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    done, succeeded, skipped = proc.stdout.split()
    assert int(skipped) >= 1 and int(succeeded) + int(skipped) == n_items - 1
    assert_same_cache(out, clean)


def test_interrupted_parts_resume_independently(tmp_path):
    """Two parts, one killed mid-way: re-running it completes the cache; the other is untouched."""
    videos = {f"v{i}": 80 + 29 * i for i in range(6)}
    root = write_affwild2(tmp_path / "data", videos)
    clean = tmp_path / "clean"
    for part in (0, 1):
        run_extract(ExtractConfig(dataset="aff-wild2", root=str(root), out=str(clean), parts=2, part=part,
                                  progress=False), encoders=fake_encoders())
    out = tmp_path / "killed"
    run_extract(ExtractConfig(dataset="aff-wild2", root=str(root), out=str(out), parts=2, part=0, progress=False),
                encoders=fake_encoders())
    driver = DRIVER.format(tests=str(TESTS), root=str(root), out=str(out), parts=2, part=1, setup="")
    proc = subprocess.Popen([sys.executable, "-c", driver], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = _committed(out)
    deadline = time.monotonic() + 60
    while _committed(out) <= base and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run([sys.executable, "-c", driver], cwd=REPO, check=True, capture_output=True, timeout=120)
    assert_same_cache(out, clean)


BUFFERED = textwrap.dedent("""
    import fgvu.cache.writer as writer_module
    writer_module.REWRITE_FLOOR, writer_module.REWRITE_RATIO = 0, 1.0  # several videos per flush
    append_video = PartWriter.append_video
    def logged(self, rec):
        append_video(self, rec)
        with open({log!r}, "a") as f:
            f.write(rec.name + "\\n")
    PartWriter.append_video = logged
""")


def test_kill_9_with_buffered_writes_equals_an_uninterrupted_run(tmp_path):
    """Videos buffered but not flushed when the kill lands are lost, and extracted again by the re-run."""
    videos = {f"v{i}": 70 + 31 * i for i in range(7)}
    root = write_affwild2(tmp_path / "data", videos)
    clean = tmp_path / "clean"
    run_extract(ExtractConfig(dataset="aff-wild2", root=str(root), out=str(clean), progress=False),
                encoders=fake_encoders())
    out, log = tmp_path / "killed", tmp_path / "appended.log"
    driver = DRIVER.format(tests=str(TESTS), root=str(root), out=str(out), parts=1, part=0,
                           setup=BUFFERED.format(log=str(log)))
    kills, lost = 0, 0
    for delay in [0.05, 0.2, 0.1, 0.3, 0.15]:
        before = _committed(out)
        if before >= len(videos) - 2:
            break
        log.write_text("")
        kills += _kill_after_a_commit(driver, out, before, delay)
        appended = len(log.read_text().split())
        lost += appended > _committed(out) - before  # appended this run, not committed: buffered only
    assert kills >= 2 and lost >= 1, (kills, lost)
    proc = subprocess.run([sys.executable, "-c", driver], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_same_cache(out, clean)
