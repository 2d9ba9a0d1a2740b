"""Torch's math threads, chosen on purpose instead of left at torch's default (every core).

Stage 2's GRUs and attention run on small matrices. On the shared 2-core development machine
(benchmarks/bench_stage2_scale.py) an epoch on torch's default of two threads took 6x as long
as on one while the machine was busy (OpenMP threads spin waiting for each other), and was 10%
faster for 40% more CPU time while it was idle; `jobs` ablation workers with one thread each
share the cores without oversubscribing them. So `fit`, `evaluate`,
`predict` and every ablation worker run with one thread unless `--threads N` asks for more;
extraction picks per encoder set (`THREADS` in `fgvu.extract.encoders.registry`). `fit`
records the count in the run's config.json, `evaluate` in eval.json.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

STAGE2_THREADS = 1


def stage2_threads(requested: int | None) -> int:
    """The threads of a stage-2 process: `requested` (`--threads`), else one."""
    if requested is not None and requested < 1:
        raise ValueError(f"threads must be at least 1, got {requested}")
    return STAGE2_THREADS if requested is None else int(requested)


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[int | None]:
    """Run the block with `count` torch intra-op threads, then restore the previous count.

    Yields the count in effect inside the block; None leaves torch alone (and yields None).
    """
    if count is None:
        yield None
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
