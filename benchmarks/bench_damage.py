"""The damaged-cache table: which deliberate damages `fgvu cache verify` detects and `fgvu fit` refuses.

Not a speed benchmark: it counts outcomes. For each checkout given (this one by default; pass
another with --repo, e.g. the main branch, to measure before/after), it extracts small caches
from synthetic videos with that checkout's code and tiny encoders (`--parts 2`; once more with
another caption prompt and once with stride 32, for the foreign-part cases), damages copies of
them in 25 ways, and runs `fgvu cache verify` and `fgvu fit --epochs 1` on each, in one process
per case. A verify counts as detecting when it exits non-zero; a fit as refusing when it stops
with a user error (one line, no traceback); a fit that stops with a traceback is counted apart.

    python benchmarks/bench_damage.py [--repo PATH ...] [--work DIR]
    python benchmarks/bench_damage.py --smoke     # seconds: checks that it runs (3 damages, no foreign parts)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from timing import add_smoke_flag

HERE = Path(__file__).resolve().parents[1]
CLI = "from fgvu.cli import main; main()"
TINY_FIT = ["--epochs", "1", "--d-model", "16", "--mlp-hidden", "16", "--heads", "2", "--quiet", "--device", "cpu"]

# One process per case: verify, then fit, through the CLI app; outcomes as JSON on the last line.
DRIVER = """
import json, sys
from typer.testing import CliRunner
from fgvu.cli import app
from fgvu.errors import FgvuError
cache, run, fit_args = sys.argv[1], sys.argv[2], sys.argv[3:]
runner = CliRunner()
def outcome(args):
    res = runner.invoke(app, args)
    if res.exit_code == 0:
        return {"result": "ok", "text": res.output.strip().splitlines()[-1:]}
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        kind = "user error" if isinstance(res.exception, FgvuError) else "traceback " + type(res.exception).__name__
        return {"result": kind, "text": [" ".join(str(res.exception).split())]}
    return {"result": "exit %d" % res.exit_code, "text": [l for l in res.output.splitlines() if l.strip()][:3]}
print(json.dumps({"verify": outcome(["cache", "verify", cache]), "fit": outcome(["fit", cache, "--out", run, *fit_args])}))
"""


def python(repo: Path, code: str, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    """`python -c code args` importing fgvu from `repo` only (the working directory would come first)."""
    env = {**os.environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, check=check)


def run_fgvu(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return python(repo, CLI, *args, check=True)


def part(cache: Path, k: int) -> Path:
    return cache / "parts" / f"part-{k:05d}.zarr"


def first_shard(cache: Path, array: str) -> Path:
    files = sorted(p for p in (part(cache, 0) / array / "c").rglob("*") if p.is_file())
    return files[0]


def flip(path: Path, offsets: list[float], mask: int) -> None:
    data = bytearray(path.read_bytes())
    for at in offsets:
        data[int(len(data) * at)] ^= mask
    path.write_bytes(bytes(data))


def write_nan(cache: Path) -> None:
    import numpy as np
    import zarr

    arr = zarr.open_group(part(cache, 0), mode="r+")["frames/image"]
    arr[1, 0] = np.nan


# --smoke: one damage of each mechanism (a missing shard, a flipped bit, a part without its commit)
SMOKE_CASES = ("deleted shard of frames/image", "low bit flipped in frames/image", "deleted commit.json")
DELETED = ["frames/image", "frames/text", "clips/video_f16", "targets/values", "targets/mask", "windows/start",
           "windows/valid", "windows/image_index", "frames/image_frame", "videos/n_frames"]


def cases(variants: dict[str, Path]) -> dict[str, Callable[[Path], None]]:
    """Damage name -> what to do to a copy of the base cache."""
    out: dict[str, Callable[[Path], None]] = {}
    for array in DELETED:
        out[f"deleted shard of {array}"] = lambda c, a=array: first_shard(c, a).unlink()
    out.update({
        "2 bytes flipped in targets/values": lambda c: flip(first_shard(c, "targets/values"), [0.4, 0.4001], 0x7F),
        "low bit flipped in frames/image": lambda c: flip(first_shard(c, "frames/image"), [0.5], 0x01),
        "low bit flipped in frames/text": lambda c: flip(first_shard(c, "frames/text"), [0.5], 0x01),
        "low bit flipped in clips/video_f16": lambda c: flip(first_shard(c, "clips/video_f16"), [0.5], 0x01),
        "NaN written into frames/image": write_nan,
        "deleted commit.json": lambda c: (part(c, 1) / "commit.json").unlink(),
        "foreign part (another prompt)": lambda c: _swap_part(c, variants["prompt"]),
        "foreign part (stride 32)": lambda c: _swap_part(c, variants["stride"]),
        "duplicate videos (part 0 copied as part 2)": lambda c: shutil.copytree(part(c, 0), part(c, 2)),
        "missing part (only part 0 of 2 extracted)": lambda c: shutil.rmtree(part(c, 1)),
        "garbage zarr.json of an array": lambda c: (part(c, 0) / "frames/image/zarr.json").write_text("{garbage"),
        "garbage zarr.json of a part": lambda c: (part(c, 0) / "zarr.json").write_text("{garbage"),
        "garbage commit.json": lambda c: (part(c, 0) / "commit.json").write_text("{garbage"),
        "garbage cache.json": lambda c: (c / "cache.json").write_text("{garbage"),
        "truncated captions.jsonl": lambda c: (part(c, 0) / "captions.jsonl").write_text(""),
    })
    return out


def _swap_part(cache: Path, other: Path) -> None:
    shutil.rmtree(part(cache, 1))
    shutil.copytree(part(other, 1), part(cache, 1))


def extract(repo: Path, data: Path, out: Path, *extra: str) -> None:
    run_fgvu(repo, "extract", "--dataset", "aff-wild2", "--root", str(data), "--out", str(out), "--encoders", "tiny",
             "--parts", "2", "--device", "cpu", "--quiet", *extra)


def measure(repo: Path, data: Path, work: Path, smoke: bool = False) -> list[tuple[str, dict]]:
    """The sound cache's row, then one per damage (only SMOKE_CASES with `smoke`, which extracts no
    foreign-part variants)."""
    base, variants = work / "base", {"prompt": work / "prompt", "stride": work / "stride"}
    extract(repo, data, base)
    if not smoke:
        extract(repo, data, variants["prompt"], "--caption-prompt", "Another prompt.")
        extract(repo, data, variants["stride"], "--stride", "32")
    sound = python(repo, DRIVER, str(base), str(work / "run-sound"), *TINY_FIT)
    rows = [("(sound cache)", json.loads(sound.stdout.splitlines()[-1]))]
    if smoke and (rows[0][1]["verify"]["result"], rows[0][1]["fit"]["result"]) != ("ok", "ok"):
        raise SystemExit(f"the sound cache does not verify and fit: {rows[0][1]}")
    chosen = {name: damage for name, damage in cases(variants).items() if not smoke or name in SMOKE_CASES}
    for name, damage in chosen.items():
        cache = work / "case"
        shutil.rmtree(cache, ignore_errors=True)
        shutil.copytree(base, cache)
        damage(cache)
        proc = python(repo, DRIVER, str(cache), str(work / "run"), *TINY_FIT)
        shutil.rmtree(work / "run", ignore_errors=True)
        if proc.returncode != 0 or not proc.stdout.strip():
            died = {"result": f"process died ({proc.returncode})", "text": proc.stderr.strip().splitlines()[-1:]}
            rows.append((name, {"verify": died, "fit": died}))
        else:
            rows.append((name, json.loads(proc.stdout.splitlines()[-1])))
        print(f"  {name}: verify {rows[-1][1]['verify']['result']}, fit {rows[-1][1]['fit']['result']}", flush=True)
    return rows


def table(label: str, rows: list[tuple[str, dict]]) -> list[str]:
    damaged = rows[1:]
    detected = sum(r["verify"]["result"] != "ok" for _, r in damaged)
    refused = sum(r["fit"]["result"] == "user error" for _, r in damaged)
    crashed = sum(r["fit"]["result"].startswith(("traceback", "process")) for _, r in damaged)
    lines = [f"## {label}", "",
             f"verify detects {detected} of {len(damaged)}; fit refuses {refused} of {len(damaged)} with one line, "
             f"stops with a traceback on {crashed}, trains on {len(damaged) - refused - crashed}", "",
             "| damage | verify | fit | fit's message |", "|---|---|---|---|"]
    for name, r in rows:
        text = (r["fit"]["text"] or [""])[0][:110].replace("|", "/")
        lines.append(f"| {name} | {r['verify']['result']} | {r['fit']['result']} | {text} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, action="append", help="a checkout to measure (repeatable); "
                        "default: this one")
    parser.add_argument("--work", type=Path, help="working folder (kept); default: a temporary one, removed")
    add_smoke_flag(parser)
    args = parser.parse_args()
    repos = args.repo or [HERE]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_damage_"))
    try:
        data = work / "data"
        if not data.exists():
            videos, frames = ("4", "100") if args.smoke else ("6", "240")
            run_fgvu(HERE, "synth", "videos", str(data), "--videos", videos, "--frames", frames)
        out = []
        for i, repo in enumerate(repos):
            print(f"{repo}:", flush=True)
            rows = measure(repo.resolve(), data, work / f"repo{i}", args.smoke)
            commit = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%h %s"], capture_output=True,
                                    text=True).stdout.strip()
            out += table(f"{repo} ({commit})", rows) + [""]
        print("\n".join(out))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
