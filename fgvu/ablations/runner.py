"""Run an ablation grid: every (configuration, seed) is a normal `fit` run in OUT/runs/<config>-s<seed>/.

Runs go to `jobs` worker processes (one torch thread each unless `--threads`, so workers do
not oversubscribe the cores), which map one shared read-only copy of the cache's arrays
(`fgvu.cache.shared`) instead of loading one each. The grid resumes: a run whose
metrics.json exists, made with the same configuration on the same cache (same path and same
content fingerprint), is not repeated. A run that fails is recorded with its error (and
error.txt in its folder) and the rest of the grid goes on; the next invocation retries it.
Workers end with the process that started them, even when it is killed with kill -9, so
nothing keeps writing into the run folders.

With engine "ray" the runs are Ray tasks (one CPU and one torch thread each) on the cluster at
$RAY_ADDRESS, or on one started here: the same run folders, resume and statistics, on every
node's cores. The cache and the output folder must then be on storage all nodes share.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from fgvu.ablations.grid import Grid, default_grid, unavailable_reason
from fgvu.ablations.report import write_report
from fgvu.cache import cache_fingerprint, read_spec
from fgvu.cache.location import absolute, cache_path
from fgvu.errors import FgvuError
from fgvu.fusion.config import FitConfig
from fgvu.fusion.run_folder import ERROR, METRICS, is_finished, lock_holder

PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal this process gets when its parent ends


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid."""

    config: str
    group: str
    seed: int
    fit: FitConfig

    @property
    def name(self) -> str:
        return f"{self.config}-s{self.seed}"


@dataclass(frozen=True)
class SkippedConfig:
    """A configuration the cache cannot serve (e.g. a sampling variant it was not extracted with)."""

    config: str
    group: str
    reason: str


@dataclass
class RunResult:
    """What happened to one run: "done" (ran now), "resumed" (finished before) or "failed"."""

    run: RunSpec
    status: str
    run_dir: Path
    metrics: dict | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class GridPlan:
    """The runs of a grid on one cache, and the configurations skipped with their reasons."""

    cache: Path  # or a StorePath (fgvu.cache.location) for a cache at a store URL
    task: str
    grid: Grid
    seeds: list[int]
    configs: dict[str, FitConfig]
    runs: list[RunSpec] = field(default_factory=list)
    skipped: list[SkippedConfig] = field(default_factory=list)


def default_jobs() -> int:
    """The number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def plan_grid(cache: str | Path, grid: Grid | None = None, seeds: int = 5, base: FitConfig | None = None,
              epochs: int | None = None) -> GridPlan:
    """Expand a grid into runs on `cache`: seeds 0..seeds-1 per configuration.

    `base` is the starting FitConfig (fgvu.toml's defaults); `epochs` overrides every run's epochs.
    Configurations whose sampling the cache does not hold are skipped with a reason.
    """
    import dataclasses

    cache = cache_path(cache)
    spec = read_spec(cache)
    grid = grid or default_grid()
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    configs = grid.build(base)
    if epochs is not None:
        configs = {name: dataclasses.replace(cfg, epochs=epochs) for name, cfg in configs.items()}
    # fit builds the autoencoding decoder exactly when recon_weight > 0 and records that in
    # config.json; planning the same keeps the resume check (same configuration) exact
    configs = {name: dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, recon=cfg.recon_weight > 0))
               for name, cfg in configs.items()}
    plan = GridPlan(cache, spec.task, grid, list(range(seeds)), configs)
    for ablation in grid.ablations:
        cfg = configs[ablation.name]
        reason = unavailable_reason(cfg, spec)
        if reason:
            plan.skipped.append(SkippedConfig(ablation.name, ablation.group, reason))
            continue
        for seed in plan.seeds:
            plan.runs.append(RunSpec(ablation.name, ablation.group, seed, dataclasses.replace(cfg, seed=seed)))
    return plan


def _init_worker(parent: int) -> None:
    """A worker that ends with its parent and uses one torch thread (`jobs` workers share the cores)."""
    _end_with_parent(parent)
    _one_thread()


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _end_with_parent(parent: int) -> None:
    """Make this process end when `parent` does, however it ends (kill -9 runs no cleanup there).

    On Linux the kernel sends SIGKILL (prctl PR_SET_PDEATHSIG); elsewhere a thread watches the
    parent's pid. A parent that died before this ran is noticed at once.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="fgvu-parent-watch", daemon=True).start()


def _execute(cache: str, cfg: FitConfig, run_dir: str, shared: str | None = None) -> dict:
    """Run one fit (on the shared arrays in folder `shared`, if given); never raises, so one bad
    configuration cannot stop the grid."""
    start = time.perf_counter()
    try:
        from fgvu.fusion.train import fit

        if shared is None:
            metrics = fit(cache, cfg, run_dir, progress=False)
        else:
            from fgvu.cache.shared import open_shared

            metrics = fit(cache, cfg, run_dir, progress=False, view=open_shared(shared))
        return {"metrics": metrics, "seconds": time.perf_counter() - start}
    except Exception as e:  # noqa: BLE001 - any failure of one run is recorded, not raised
        message = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        try:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            (Path(run_dir) / ERROR).write_text(traceback.format_exc())
        except OSError:
            pass
        return {"error": message, "seconds": time.perf_counter() - start}


ENGINES = ("local", "ray")


def run_grid(plan: GridPlan, out: str | Path, jobs: int | None = None, progress: bool = True,
             log=print, engine: str = "local") -> list[RunResult]:
    """Run every run of `plan` under OUT/runs/, `jobs` at a time; return one result per run, in plan order.

    Locally, with jobs=1 the runs execute in this process; with more, in fresh worker processes
    that share one read-only copy of the arrays. Each run uses its configuration's torch threads
    (one by default). A worker that dies takes only the runs it held with it; the rest continue
    in a new pool. With engine "ray" they are Ray tasks.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    from tqdm import tqdm

    runs_root = Path(out) / "runs"
    runs_root.mkdir(parents=True, exist_ok=True)
    results: dict[str, RunResult] = {}
    todo: list[RunSpec] = []
    fingerprint = cache_fingerprint(plan.cache)
    for run in plan.runs:
        run_dir = runs_root / run.name
        metrics = is_finished(run_dir, run.fit, plan.cache, fingerprint)
        if metrics is not None:
            results[run.name] = RunResult(run, "resumed", run_dir, metrics)
            continue
        holder = lock_holder(run_dir)
        if holder is not None:  # another grid (or a fit) is writing it now: leave it alone
            results[run.name] = RunResult(run, "failed", run_dir,
                                          error=f"its run folder is being written by another process (pid {holder})")
            log(f"run {run.name} skipped: {run_dir} is being written by another process (pid {holder})")
            continue
        if run_dir.exists():  # a failed, interrupted or differently configured run: start it afresh
            if (run_dir / METRICS).exists():
                log(f"re-running {run.name}: its folder holds a run with another configuration or cache")
            shutil.rmtree(run_dir)
        todo.append(run)
    if results:
        log(f"resuming: {len(results)} of {len(plan.runs)} runs already finished")

    if engine == "local":
        jobs = max(1, min(jobs or default_jobs(), len(todo) or 1))
    bar = tqdm(total=len(todo), desc="ablation runs", unit="run", disable=not progress)

    def record(run: RunSpec, outcome: dict) -> None:
        run_dir = runs_root / run.name
        if "error" in outcome:
            results[run.name] = RunResult(run, "failed", run_dir, error=outcome["error"], seconds=outcome["seconds"])
            log(f"run {run.name} failed: {outcome['error']}")
        else:
            results[run.name] = RunResult(run, "done", run_dir, outcome["metrics"], seconds=outcome["seconds"])
        bar.update(1)

    if engine == "ray":
        _run_on_ray(todo, plan.cache, runs_root, jobs, record)
    elif jobs == 1:
        for run in todo:
            record(run, _execute(str(plan.cache), run.fit, str(runs_root / run.name)))
    else:
        _run_in_pool(todo, plan.cache, runs_root, jobs, record)
    bar.close()
    return [results[run.name] for run in plan.runs]


def _run_in_pool(todo: list[RunSpec], cache: Path, runs_root: Path, jobs: int, record) -> None:
    """At most `jobs` runs in flight, so a dying worker takes only those with it; then a fresh pool goes on."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from fgvu.cache.shared import share_cache

    # every array any of the runs reads, written once and mapped by all workers
    modalities = {m for run in todo for m in run.fit.model.modalities}
    shared = share_cache(cache, modalities, {run.fit.video_frames for run in todo}, fallback=runs_root.parent)
    # spawn: workers start clean (no forked torch/OpenMP state); one thread each via the env and the initializer
    context = multiprocessing.get_context("spawn")
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    queue = list(reversed(todo))  # pop() from the end keeps plan order
    try:
        while queue:
            with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                                     initargs=(os.getpid(),)) as pool:
                in_flight: dict = {}
                broken = False
                while (queue or in_flight) and not broken:
                    while queue and len(in_flight) < jobs:
                        run = queue.pop()
                        in_flight[pool.submit(_execute, str(cache), run.fit, str(runs_root / run.name),
                                              str(shared.folder))] = run
                    finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in finished:
                        run = in_flight.pop(future)
                        try:
                            record(run, future.result())
                        except BrokenProcessPool:
                            broken = True
                            record(run, {"error": "its worker process died (out of memory or crashed)", "seconds": 0.0})
                if broken:  # every run still in flight shared the dead pool
                    for run in in_flight.values():
                        record(run, {"error": "a worker process died while this run was in flight", "seconds": 0.0})
    finally:
        shared.remove()
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved


def _execute_on_ray(cache: str, cfg: FitConfig, run_dir: str) -> dict:
    """A Ray task: one run with one torch thread, as in a local worker process (Ray owns its lifetime)."""
    _one_thread()
    return _execute(cache, cfg, run_dir)


def _run_on_ray(todo: list[RunSpec], cache: Path, runs_root: Path, jobs: int | None, record,
                retries: int = 2) -> None:
    """Every run as a Ray task, at most `jobs` in flight (None: as many as the cluster has CPUs).

    A task whose worker dies is retried `retries` times by Ray; after that the run is recorded
    as failed and the others go on. Paths are absolute, so remote workers write where we read.
    """
    try:
        import ray
    except ImportError:
        raise FgvuError("--engine ray needs Ray, which is not installed: pip install 'fgvu[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False, logging_level="WARNING")
    task = ray.remote(num_cpus=1, max_retries=retries)(_execute_on_ray)
    limit = jobs or max(1, int(ray.cluster_resources().get("CPU", 1)))
    cache, runs_root = absolute(cache), Path(runs_root).resolve()
    queue, in_flight = list(reversed(todo)), {}  # pop() from the end keeps plan order
    while queue or in_flight:
        while queue and len(in_flight) < limit:
            run = queue.pop()
            in_flight[task.remote(str(cache), run.fit, str(runs_root / run.name))] = run
        finished, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in finished:
            run = in_flight.pop(ref)
            try:
                record(run, ray.get(ref))
            except ray.exceptions.RayError as e:  # the worker died on every try
                record(run, {"error": f"its Ray task failed: {type(e).__name__}", "seconds": 0.0})


def run_ablations(cache: str | Path, out: str | Path, grid: Grid | None = None, seeds: int = 5,
                  jobs: int | None = None, base: FitConfig | None = None, epochs: int | None = None,
                  progress: bool = True, log=print, dry_run: bool = False,
                  engine: str = "local") -> tuple[GridPlan, list[RunResult], dict[str, Path]]:
    """Plan, run (resuming) and report a grid on `cache` into `out`; return the plan, results and report files.

    With `dry_run` the plan is only logged (every configuration, and how many runs would go where):
    nothing runs and nothing is written, so the results and files are empty.
    """
    plan = plan_grid(cache, grid, seeds, base, epochs)
    for skipped in plan.skipped:
        log(f"skipping {skipped.config}: {skipped.reason}")
    if dry_run:
        for ablation in plan.grid.ablations:
            log(f"{ablation.name:14s} {ablation.group:13s} {ablation.description}")
        log(f"{len(plan.runs)} runs ({len(plan.configs) - len(plan.skipped)} configurations x "
            f"{len(plan.seeds)} seeds) would go to {out}/runs/")
        return plan, [], {}
    if engine == "ray":
        log(f"{len(plan.runs)} runs on {plan.cache} ({plan.task}) as Ray tasks, into {out}")
    else:
        jobs = jobs or default_jobs()
        log(f"{len(plan.runs)} runs on {plan.cache} ({plan.task}), {jobs} parallel jobs, into {out}")
    results = run_grid(plan, out, jobs, progress, log, engine)
    return plan, results, write_report(plan, results, out)
