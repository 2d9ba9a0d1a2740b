"""Training throughput (windows/s) of fgvu's in-memory loader against a per-sample h5py baseline.

Both loops train the same fusion model (ModelConfig defaults unless --d-model is given) for
one epoch over the same windows of the same synthetic cache, in the same process:

- fgvu: the cached tensors in memory, each batch gathered with index tensors
  (fgvu.fusion.data.FeatureData.inputs);
- baseline: the same arrays written to one HDF5 file, a torch Dataset that reads one window
  per __getitem__ (its image rows, caption rows, clip and targets) and normalises it, behind
  a torch DataLoader that shuffles and collates.

It also times each loader alone (no model), which shows the loading cost itself. The two are
timed alternately, best of --repeats, with CPU seconds next to wall seconds (benchmarks/timing.py;
with --workers > 0 the baseline's worker processes are not in its CPU seconds).

    .venv/bin/python benchmarks/bench_loader.py            # ~4k windows at 768 dims
    .venv/bin/python benchmarks/bench_loader.py --videos 20 --frames 300 --dim 64   # quick
    .venv/bin/python benchmarks/bench_loader.py --smoke    # seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fgvu.cache import open_cache
from fgvu.fusion.config import ModelConfig
from fgvu.fusion.data import FeatureData, Normalization
from fgvu.fusion.losses import va_loss
from fgvu.fusion.model import FusionModel
from fgvu.fusion.optim import AdamW
from fgvu.synth.features import write_feature_cache
from fgvu.threads import stage2_threads
from timing import Timing, add_smoke_flag, best_of


def write_h5(path: Path, view, targets: torch.Tensor, mask: torch.Tensor) -> None:
    """The cache's arrays, as one HDF5 file (what `fgvu cache export --format h5` would hold)."""
    import h5py

    with h5py.File(path, "w") as f:
        f["image"] = view.image
        f["text"] = view.text
        f["clips"] = view.video[16]
        f["image_index"] = view.image_index
        f["caption_index"] = view.caption_index
        f["step_targets"] = targets.numpy()
        f["step_mask"] = mask.numpy()


class H5Windows(torch.utils.data.Dataset):
    """The per-sample baseline: one window per __getitem__, read from HDF5 and normalised."""

    def __init__(self, path: Path, norm: Normalization):
        self.path = path
        self.mean = {m: t.numpy() for m, t in norm.mean.items()}
        self.std = {m: t.numpy() for m, t in norm.std.items()}
        self.file = None
        import h5py

        with h5py.File(path, "r") as f:
            self.n = len(f["clips"])

    def __len__(self) -> int:
        return self.n

    def _rows(self, name: str, index: np.ndarray) -> np.ndarray:
        # h5py fancy indexing wants increasing, unique indices
        unique, inverse = np.unique(index, return_inverse=True)
        return self.file[name][unique][inverse]

    def __getitem__(self, w: int):
        import h5py

        if self.file is None:  # opened lazily, once per worker process
            self.file = h5py.File(self.path, "r")
        f = self.file
        image = self._rows("image", f["image_index"][w]).astype(np.float32)
        text = self._rows("text", f["caption_index"][w]).astype(np.float32)
        clip = f["clips"][w].astype(np.float32)
        return (
            {
                "v": torch.from_numpy((clip - self.mean["v"]) / self.std["v"]),
                "i": torch.from_numpy((image - self.mean["i"]) / self.std["i"]),
                "t": torch.from_numpy((text - self.mean["t"]) / self.std["t"]),
            },
            torch.from_numpy(f["step_targets"][w]),
            torch.from_numpy(f["step_mask"][w]),
        )


def train_step(model, optimizer, inputs, y, m) -> None:
    out = model(inputs)
    loss = va_loss(out.steps.reshape(-1, 2), y.reshape(-1, 2), m.reshape(-1, 2))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def fgvu_batches(data: FeatureData, norm, targets, mask, batch_size: int, seed: int):
    order = torch.randperm(data.n_windows, generator=torch.Generator().manual_seed(seed))
    for lo in range(0, len(order), batch_size):
        idx = order[lo : lo + batch_size]
        yield data.inputs(idx, norm), targets[idx], mask[idx]


def h5_batches(dataset: H5Windows, batch_size: int, workers: int, seed: int):
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
        generator=torch.Generator().manual_seed(seed), persistent_workers=False,
    )
    yield from loader


def run_epoch(batches, device: torch.device, step=None) -> int:
    """Windows of one pass; `step` trains on each batch (None: loading only).

    Batches are moved to `device` (a no-op for fgvu's, which are gathered there).
    """
    n = 0
    for inputs, y, m in batches:
        inputs = {k: x.to(device, non_blocking=True) for k, x in inputs.items()}
        y, m = y.to(device), m.to(device)
        if step is not None:
            step(inputs, y, m)
        n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=110, help="synthetic videos (about 37 windows each at 650 frames)")
    ap.add_argument("--frames", type=int, default=650)
    ap.add_argument("--dim", type=int, default=768, help="feature width of every modality (CLIP ViT-L/14: 768)")
    ap.add_argument("--d-model", type=int, default=ModelConfig().d_model, help="model width (default: ModelConfig's)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes of the baseline")
    ap.add_argument("--threads", type=int, default=stage2_threads(None),
                    help="torch intra-op threads (default: fgvu fit's)")
    ap.add_argument("--device", default="cpu", help="where the model trains (cpu, cuda); fgvu gathers there too")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs of each loader, alternating; the best counts")
    add_smoke_flag(ap)
    args = ap.parse_args()
    if args.smoke:
        args.videos, args.frames, args.dim, args.d_model, args.repeats = 4, 200, 16, 16, 1
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        cache = write_feature_cache(tmp / "cache", videos=args.videos, frames=args.frames, seed=0, dims=args.dim)
        view = open_cache(cache)
        data = FeatureData(view, ("v", "i", "t"), device=device)
        norm = data.fit_normalization(np.arange(len(view.videos)))
        targets, mask = data.step_targets(16)
        write_h5(tmp / "features.h5", view, targets.cpu(), mask.cpu())
        dataset = H5Windows(tmp / "features.h5", norm.to("cpu"))
        print(f"{view.n_windows} windows of {args.dim}-d features, batch {args.batch_size}, "
              f"d_model {args.d_model}, {args.device}, {args.threads} torch threads, baseline workers {args.workers} "
              f"(setup {time.perf_counter() - t0:.0f}s)")

        torch.manual_seed(0)
        model = FusionModel(ModelConfig(d_model=args.d_model), data.dims, 2, "va").to(device)
        optimizer = AdamW(model.parameters(), lr=1e-4)
        model.train()

        def step(inputs, y, m):
            train_step(model, optimizer, inputs, y, m)

        warm = next(iter(fgvu_batches(data, norm, targets, mask, args.batch_size, 1)))
        step(*warm)  # first-call allocations out of the timings

        loaders = {
            "fgvu (in-memory, gathered)": lambda: fgvu_batches(data, norm, targets, mask, args.batch_size, 0),
            "h5py Dataset + DataLoader": lambda: h5_batches(dataset, args.batch_size, args.workers, 0),
        }
        n = view.n_windows
        load = best_of({k: (lambda make=make: run_epoch(make(), device)) for k, make in loaders.items()},
                       args.repeats)
        train = best_of({k: (lambda make=make: run_epoch(make(), device, step)) for k, make in loaders.items()},
                        args.repeats)
        print(f"{'loader':<30}{'train windows/s':>17}{'(wall s, CPU-s)':>19}{'load-only windows/s':>22}"
              f"{'(wall s, CPU-s)':>19}")
        for label in loaders:
            print(f"{label:<30}{n / train[label].wall:>17.1f}{_pair(train[label]):>19}"
                  f"{n / load[label].wall:>22.1f}{_pair(load[label]):>19}")
        t_ours, t_base = (train[k] for k in loaders)
        l_ours, l_base = (load[k] for k in loaders)
        print(f"ratio fgvu / h5py (best of {args.repeats}, interleaved): training {t_base.wall / t_ours.wall:.1f}x "
              f"wall ({t_base.cpu / t_ours.cpu:.1f}x CPU), loading alone {l_base.wall / l_ours.wall:.1f}x wall "
              f"({l_base.cpu / max(l_ours.cpu, 1e-9):.1f}x CPU)")


def _pair(t: Timing) -> str:
    return f"({t.wall:.2f}, {t.cpu:.2f})"


if __name__ == "__main__":
    main()
