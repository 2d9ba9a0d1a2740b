"""Every benchmark runs: each script's --smoke mode, as a subprocess, so none can rot unnoticed.

Smoke runs are seconds long on tiny inputs; they check that the code paths work and print
their figures, not the figures themselves (those come from full runs, on a quiet machine).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("bench_*.py"))
# a line each smoke run must print: its headline figure
EXPECTED = {
    "bench_audio.py": "track once / window by window",
    "bench_captioner.py": "baseline: one image at a time",
    "bench_damage.py": "verify detects",
    "bench_decode.py": "ratio fgvu / bare",
    "bench_encoders.py": "ratio ours / transformers",
    "bench_extract.py": "garbage collector",
    "bench_loader.py": "ratio fgvu / h5py",
    "bench_scaleout.py": "local, --decode-workers 2",
    "bench_stage2_scale.py": "Aff-Wild2",
    "bench_stream.py": "mean CCC",
    "bench_verify.py": "verify with checksums",
}


def test_every_benchmark_has_a_smoke_check():
    assert SCRIPTS and sorted(EXPECTED) == SCRIPTS


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> str:
    """One folder for the tiny encoders' generated assets, so they are made once for all scripts."""
    return str(tmp_path_factory.mktemp("fgvu-assets"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke(script, tmp_path, assets):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch), "FGVU_CACHE_DIR": assets}
    out = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke"], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, f"{script} --smoke failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert EXPECTED[script] in out.stdout, out.stdout
    # torch's compile cache (torchinductor_<user>) is torch's, made by the import of transformers
    left = sorted(p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor_"))
    assert not left, f"{script} left temporary files: {left}"
