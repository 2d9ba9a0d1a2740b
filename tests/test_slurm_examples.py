"""examples/slurm: array task k runs part k of K; the verification job waits for the whole array (afterok).

`fgvu` and `sbatch` are stand-ins on PATH that record how they were called.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SLURM = Path(__file__).resolve().parents[1] / "examples" / "slurm"
RECORDER = """#!/bin/bash
echo "$(basename "$0") $*" >> "$CALLS"
[ "$(basename "$0")" = sbatch ] && echo 4242
exit 0
"""


def _bin(tmp_path: Path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("fgvu", "sbatch"):
        (bin_dir / name).write_text(RECORDER)
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CALLS": str(tmp_path / "calls"),
            "ROOT": "/shared/data/aff-wild2", "OUT": "/shared/caches/aff-wild2"}


def test_array_tasks_run_their_part_then_verify(tmp_path):
    env = _bin(tmp_path)
    for k in range(3):
        slurm = {"SLURM_ARRAY_TASK_ID": str(k), "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_CPUS_PER_TASK": "8",
                 "FGVU_EXTRACT_ARGS": "--encoders tiny"}
        subprocess.run(["bash", str(SLURM / "extract.sbatch")], env={**env, **slurm}, check=True, cwd=tmp_path)
    subprocess.run(["bash", str(SLURM / "verify.sbatch")], env=env, check=True, cwd=tmp_path)
    calls = (tmp_path / "calls").read_text().splitlines()
    for k in range(3):
        assert calls[k] == (f"fgvu extract --dataset aff-wild2 --root /shared/data/aff-wild2 --out "
                            f"/shared/caches/aff-wild2 --parts 3 --part {k} --decode-workers 6 --quiet --encoders tiny")
    assert calls[3:] == ["fgvu cache verify /shared/caches/aff-wild2", "fgvu cache info /shared/caches/aff-wild2"]


def test_an_extract_task_outside_an_array_refuses_to_guess_the_parts(tmp_path):
    env = {k: v for k, v in _bin(tmp_path).items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", str(SLURM / "extract.sbatch")], env=env, cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode != 0 and "array job" in proc.stderr
    assert not (tmp_path / "calls").exists()


def test_submit_chains_verification_after_the_whole_array(tmp_path):
    env = {**_bin(tmp_path), "PARTS": "4"}
    proc = subprocess.run(["bash", str(SLURM / "submit.sh")], env=env, check=True, capture_output=True, text=True,
                          cwd=tmp_path)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0].startswith("sbatch --parsable --export=ALL --array=0-3 ") and calls[0].endswith("extract.sbatch")
    assert "--dependency=afterok:4242" in calls[1] and calls[1].endswith("verify.sbatch")
    assert "4 parts" in proc.stdout and (tmp_path / "logs").is_dir()
