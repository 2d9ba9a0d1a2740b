"""`fgvu extract --engine ray`: extraction as a Ray Data batch-inference pipeline.

    pending sources (a dataset, one row each)
      -> decode_sources        CPU tasks, one per source, on every core of every node: header,
                               grid-frame and clip chunks as each completes, end (ray_stages)
      -> VideoStage            VideoPrism actors (--ray-encoder-actors, --encoder-gpus each)
      -> CaptionStage          captioner actors, scaled on their own (--ray-captioners, --caption-gpus)
      -> ImageStage            CLIP actors: image chunks, and the captions' texts
      -> the driver            groups the rows back into whole sources and commits them

Ray Data streams the blocks between the stages and holds producers back when consumers fall
behind (backpressure), so memory stays bounded however many videos there are. Each chunk is
one encoder call of the local engine, cut the same way (`chunks`), and the driver commits each
part's sources in the local engine's order through that part's one `PartWriter`: the cache,
its exactly-once commits and its resume are those of the local engine, array for array.

Everything that can be checked is checked on the driver before any task starts: paths are made
absolute, the dataset is listed, every encoder is loaded once in a short probe task (names,
weights, fingerprints, the frame size to decode to), the part writers are opened (cache
compatibility, part locks). Failed tasks are retried (`--max-retries`, lost workers and
exceptions alike); videos whose tasks still fail are listed in the summary and not recorded,
so a re-run retries them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass

from fgvu.errors import FgvuError
from fgvu.extract.chunks import assemble
from fgvu.extract.config import ExtractConfig, ExtractConfigError
from fgvu.extract.encoding import BatchSizes, EncodeCounts, EncoderSet
from fgvu.extract.parts import SourceGroup, split_parts
from fgvu.extract.pipeline import (
    ExtractSummary, ReusedCaptions, build_dataset, build_encoder, caption_prompt, encoder_names, failure_recorder,
    make_spec, write_source,
)
from fgvu.extract.ray_stages import STAGES, VIEW_SEQ, describe_encoders, rows_of, unpack, view_key
from fgvu.extract.sources import PreparedSource, SourcePreparer, views

log = logging.getLogger(__name__)

DEFAULT_ENCODER_GPUS = 0.25  # VideoPrism and CLIP: with one captioner at 0.5, one of each fits on a card
DEFAULT_CAPTION_GPUS = 0.5


def import_ray():
    """The ray module, or an ExtractConfigError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the engine needs Ray Data, not only Ray core
    except ImportError:
        raise ExtractConfigError("--engine ray needs Ray Data, which is not installed: pip install 'fgvu[ray]'") from None
    return ray


def init_ray(ray) -> float:
    """Join the cluster at $RAY_ADDRESS (or the one this process already joined), else start one; seconds taken."""
    start = time.perf_counter()
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                 logging_level=logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # our progress bar replaces its execution logs
    return time.perf_counter() - start


def user_error(error: BaseException) -> FgvuError | None:
    """The FgvuError a Ray task or actor raised, found through Ray's wrappers; None if there is none."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, FgvuError) and not type(e).__module__.startswith("ray"):
            return e
        stack += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return None


@dataclass
class Described:
    """What the driver plans with for one encoder, from a probe task: its fingerprint, width, input size."""

    fingerprint: dict
    dim: int
    input_size: int | None


@dataclass(frozen=True)
class Resources:
    """Actors and GPUs per encoder role."""

    actors: dict[str, int]
    gpus: dict[str, float]

    @classmethod
    def plan(cls, cfg: ExtractConfig, cluster_gpus: float) -> "Resources":
        has_gpu = cfg.device != "cpu" and cluster_gpus > 0
        enc = cfg.encoder_gpus if cfg.encoder_gpus is not None else DEFAULT_ENCODER_GPUS if has_gpu else 0.0
        cap = cfg.caption_gpus if cfg.caption_gpus is not None else DEFAULT_CAPTION_GPUS if has_gpu else 0.0
        return cls({"video": cfg.ray_encoder_actors, "captioner": cfg.ray_captioners, "image": cfg.ray_encoder_actors},
                   {"video": enc, "captioner": cap, "image": enc})

    def cpus(self, role: str) -> float:
        # An actor feeding a GPU keeps about one core busy. Without a GPU the actors reserve no core:
        # decode tasks take them all and the encoders share them, as in the local engine's one process.
        return 1.0 if self.gpus[role] > 0 else 0.0


def probe_encoders(ray, cfg: ExtractConfig, build, roles: list[str], resources: Resources) -> dict[str, Described]:
    """Load each encoder once, in one task with the largest resources of their actors, to validate
    them and plan with them.

    The probe's worker exits afterwards (max_calls=1), so it holds no GPU memory. An encoder's
    user-facing error (unknown name, missing weights) is raised here as itself: one clear line.
    """
    task = ray.remote(num_cpus=max(resources.cpus(r) for r in roles), num_gpus=max(resources.gpus[r] for r in roles),
                      max_calls=1, max_retries=cfg.max_retries)(describe_encoders)
    try:
        return {role: Described(**d) for role, d in ray.get(task.remote(roles, cfg, build)).items()}
    except Exception as error:  # noqa: BLE001 - unwrapped below, or raised as it came
        cause = user_error(error)
        if cause is not None:
            raise cause from None
        raise


def run_ray(cfg: ExtractConfig, adapter=None, build=None) -> ExtractSummary:
    """Extract the configured parts on a Ray cluster; the same cache as `run_extract` with the local engine.

    `adapter` replaces the dataset `cfg` names; `build(role, cfg)` replaces the registry's
    encoders (tests, benchmarks) and runs in the actors, so it must be importable there.
    """
    ray = import_ray()
    cfg = cfg.with_absolute_paths()
    if adapter is None:
        adapter, items = build_dataset(cfg)
    else:
        items = sorted(adapter.items(), key=lambda item: item.name)[: cfg.limit]
    reused = ReusedCaptions(cfg.reuse_captions_path, cfg.sampling) if cfg.reuse_captions_path is not None else None
    if reused is not None and reused.cache == cfg.out_path:
        raise ExtractConfigError(f"--reuse-captions names the output cache {cfg.out_path}; pass the cache "
                                 "the captions come from, and a new --out for the new encoders")
    prompt = caption_prompt(cfg, adapter, reused)
    encoder_names(cfg)  # an unknown encoder set fails before Ray starts
    from fgvu.extract.encoders.registry import audio_encoder_name

    if audio_encoder_name(cfg.encoders, cfg.audio_encoder):
        raise ExtractConfigError(
            f"--engine ray does not encode audio yet (the {cfg.encoders!r} set includes "
            f"{audio_encoder_name(cfg.encoders, cfg.audio_encoder)}): pass --audio-encoder none, and add the audio "
            "afterwards with `fgvu extract --only audio --into CACHE`, or extract with the local engine")
    build = build or build_encoder
    startup = init_ray(ray)
    roles = ["video", "image"] + ([] if reused is not None else ["captioner"])
    resources = Resources.plan(cfg, ray.cluster_resources().get("GPU", 0))
    probe_start = time.perf_counter()
    described = probe_encoders(ray, cfg, build, roles, resources)
    startup += time.perf_counter() - probe_start
    encoders = EncoderSet(video=described["video"], image_text=described["image"],
                          captioner=described.get("captioner"))
    spec = make_spec(cfg, adapter.task, encoders, prompt, reused)
    run = RayRun(cfg, spec, adapter, encoders, prompt, reused, build, resources, described)
    summary = run.run(ray, items)
    summary.startup_seconds = startup
    return summary


def _user_errors(batches):
    """The batches; a FgvuError raised in a task or actor (e.g. an actor whose weights differ from the
    probe's) surfaces as itself, one line, instead of inside Ray's wrappers."""
    try:
        yield from batches
    except Exception as error:  # noqa: BLE001 - unwrapped below, or raised as it came
        cause = user_error(error)
        if cause is not None:
            raise cause from None
        raise


@contextlib.contextmanager
def _data_context(ray):
    """Ray Data's settings for this run, restored afterwards (they are global to the driver process)."""
    ctx = ray.data.DataContext.get_current()
    names = ("enable_progress_bars", "max_errored_blocks", "actor_task_retry_on_errors")
    saved = {name: getattr(ctx, name) for name in names}
    ctx.enable_progress_bars = False  # one bar for the whole run: ours
    ctx.max_errored_blocks = -1  # a source whose tasks fail past their retries is reported, the rest goes on
    ctx.actor_task_retry_on_errors = True  # encoder exceptions are retried too (max_task_retries)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)


@dataclass
class _Source:
    """What the driver has of one pending source: its rows by chunk key, until the end row says it is whole."""

    group: SourceGroup
    part: int
    rows: dict
    outcome: tuple | None = None  # ("write", header, results) | ("fail", header, reason) once whole

    def whole(self) -> bool:
        end = self.rows.get(("end", 0, 0))
        return end is not None and len(self.rows) - 1 == end[0]["rows"]


class RayRun:
    """One Ray extraction: the dataset of pending sources, its stages, and the in-order commits per part."""

    def __init__(self, cfg, spec, adapter, encoders, prompt, reused, build, resources, described):
        self.cfg, self.spec, self.adapter, self.encoders = cfg, spec, adapter, encoders
        self.prompt, self.reused, self.build, self.resources = prompt, reused, build, resources
        self.described = described
        self.batches = BatchSizes(cfg.image_batch, cfg.clip_batch, cfg.caption_batch, cfg.text_batch)
        self.busy: dict[str, float] = {"decode": 0.0, **{role: 0.0 for role in described}}
        self.decoded_frames = 0

    def run(self, ray, items: list) -> ExtractSummary:
        from tqdm import tqdm

        from fgvu.cache import PartWriter, committed_videos, iter_committed_parts

        cfg, out = self.cfg, self.cfg.out_path
        parts = cfg.parts_to_run()
        summary = ExtractSummary(out=out, parts=parts)
        with contextlib.ExitStack() as stack:
            writers = {p: stack.enter_context(PartWriter(out, self.spec, p, parts=cfg.parts,
                                                         lease_seconds=cfg.lease_seconds)) for p in parts}
            known = {f["video"] for part in iter_committed_parts(out) for f in part.failures}
            done = set(committed_videos(out))
            sources: list[_Source] = []
            order: dict[int, list[int]] = {p: [] for p in parts}  # each part's sources, in the local order
            all_parts = split_parts(items, cfg.parts)
            for p in parts:
                for g in all_parts[p]:
                    summary.skipped += sum(i.name in done for i in g.items)
                    pending = [i for i in g.items if i.name not in done]
                    if pending:
                        order[p].append(len(sources))
                        sources.append(_Source(SourceGroup(g.source, pending), p, {}))
            bar = stack.enter_context(tqdm(total=sum(len(s.group.items) for s in sources), unit="video",
                                           desc="extract (ray)", disable=not cfg.progress, dynamic_ncols=True))
            fails = {p: failure_recorder(writers[p], summary, bar, known) for p in parts}
            start = time.perf_counter()
            if sources:
                stack.enter_context(_data_context(ray))
                for batch in _user_errors(self._dataset(ray, sources).iter_batches(batch_size=None,
                                                                                  batch_format="numpy")):
                    for r in rows_of(batch):
                        source = sources[r["source"]]
                        if source.outcome is not None:  # a late copy from a retried task
                            continue
                        source.rows[(r["kind"], r["t"], r["seq"])] = (json.loads(r["meta"]), r["data"])
                        if source.whole():
                            source.outcome = self._outcome(source)
                            self._commit_ready(order[source.part], sources, writers[source.part],
                                               fails[source.part], summary, bar)
                    self._show(bar, start)
            for p in parts:  # what never became whole: its tasks failed past their retries
                for k in order[p]:
                    if sources[k].outcome is None:
                        reason = f"its Ray tasks failed {cfg.max_retries + 1} times (the Ray Data log has the errors)"
                        summary.lost += [(item.name, reason) for item in sources[k].group.items]
                        sources[k].outcome = ("lost",)
                self._commit_ready(order[p], sources, writers[p], fails[p], summary, bar)
                if not any(sources[k].outcome == ("lost",) for k in order[p]):
                    writers[p].mark_finished()  # the part's list is done: readers may now count it complete
        summary.seconds = time.perf_counter() - start
        summary.busy = {stage: round(seconds, 3) for stage, seconds in self.busy.items()}
        return summary

    def _dataset(self, ray, sources: list[_Source]):
        """The pipeline over the pending sources: decode tasks, then one actor pool per encoder."""
        prepare = SourcePreparer(self.spec.sampling, self.adapter, self.encoders.input_side(), self.reused)
        ds = ray.data.from_items([{"source": k} for k in range(len(sources))], override_num_blocks=len(sources))
        with warnings.catch_warnings():
            # Ray 2.60 deprecates passing retries through **ray_remote_args but has no named parameter for them
            warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
            return self._stages(ray, ds, prepare, [s.group for s in sources])

    def _stages(self, ray, ds, prepare, groups: list[SourceGroup]):
        from fgvu.extract.ray_stages import decode_sources

        ds = ds.map_batches(decode_sources, batch_size=1, num_cpus=1, max_retries=self.cfg.max_retries,
                            retry_exceptions=True,
                            fn_kwargs={"groups": groups, "prepare": prepare,
                                       "batches": self.batches})
        for role in ("video", "captioner", "image"):
            if role not in self.described:
                continue
            ds = ds.map_batches(
                STAGES[role], batch_size=1, compute=ray.data.ActorPoolStrategy(size=self.resources.actors[role]),
                num_cpus=self.resources.cpus(role), num_gpus=self.resources.gpus[role],
                max_task_retries=self.cfg.max_retries,
                fn_constructor_kwargs={"cfg": self.cfg, "build": self.build, "prompt": self.prompt,
                                       "fingerprint": self.described[role].fingerprint},
            )
        return ds

    def _outcome(self, source: _Source) -> tuple:
        """A whole source -> ("write", header, chunk results) or ("fail", header or None, reason)."""
        rows = source.rows
        end = rows[("end", 0, 0)][0]
        self.busy["decode"] += end["busy"]
        for key, (meta, _) in rows.items():
            for stage, seconds in (meta.get("busy") or {}).items() if key[0] != "end" else ():
                self.busy[stage] = self.busy.get(stage, 0.0) + seconds
        header = self._header(source) if ("header", 0, 0) in rows else None
        if header is not None:
            self.decoded_frames += header.info.n_frames
        if end["reason"] is not None:
            return ("fail", header, end["reason"])
        chunk_keys = sorted(k for k in rows if k[0] not in ("header", "end"))
        errors = [rows[k][0]["error"] for k in chunk_keys if "error" in rows[k][0]]
        if errors:
            return ("fail", header, errors[0])
        results = {}
        for key in chunk_keys:
            meta, data = rows[key]
            counts = EncodeCounts()
            for name, value in (meta.get("counts") or {}).items():
                setattr(counts, name, getattr(counts, name) + value)
            results[key] = {"features": unpack(data)["features"], "captions": meta.get("captions"), "counts": counts}
        return ("write", header, results)

    def _header(self, source: _Source) -> PreparedSource:
        """The source's PreparedSource, rebuilt from its header row (the layout follows from the frame count)."""
        from fgvu.extract.datasets import Targets
        from fgvu.extract.video_source import VideoInfo

        meta, data = source.rows[("header", 0, 0)]
        arrays = unpack(data)
        targets = {}
        for i, (item, t) in enumerate(zip(source.group.items, meta["targets"])):
            targets[item.name] = (FgvuError(t["error"]) if "error" in t else
                                  Targets(arrays[f"values_{i}"], arrays[f"mask_{i}"], t["warnings"]))
        info = VideoInfo(source.group.source, meta["n_frames"], meta["fps"], meta["width"], meta["height"])
        halves = {view_key(h): h for h in (None, "left", "right")}
        captions = ({halves[k]: texts for k, texts in meta["captions"].items()}
                    if meta["captions"] is not None else None)
        return PreparedSource(info, self.spec.sampling.layout(meta["n_frames"]), targets, captions,
                              list(meta.get("missing", [])))

    def _commit_ready(self, order: list[int], sources: list[_Source], writer, fail, summary, bar) -> None:
        """Commit the part's leading sources that are whole, in order; later ones wait for earlier ones."""
        while order and sources[order[0]].outcome is not None:
            source = sources[order.pop(0)]
            outcome, group = source.outcome, source.group
            if outcome[0] != "lost":
                self._apply(outcome, group, writer, fail, summary, bar)
            source.rows.clear()  # the features are in the cache now

    def _apply(self, outcome: tuple, group: SourceGroup, writer, fail, summary, bar) -> None:
        kind, header = outcome[0], outcome[1]
        writable = [i.name for i in group.items]
        if header is not None:  # bad annotations first, as the local engine records them
            for name, value in header.targets.items():
                if isinstance(value, Exception):
                    fail([name], value)
            writable = [i.name for i in header.writable(group)]
        if kind == "fail":
            if writable:
                fail(writable, FgvuError(outcome[2]))
            return
        if writable:
            dim = self.encoders.dims["text"]
            results = outcome[2]
            finishers = {}
            for v, half in enumerate(views(header.ok(group.items))):  # the views decode_source cut, in order
                mine = {k: r for k, r in results.items() if k[2] // VIEW_SEQ == v}
                finishers[half] = lambda mine=mine: assemble(header.layout, mine, dim)
            write_source(writer, group, header, finishers, summary, fail, bar)

    def _show(self, bar, start: float) -> None:
        elapsed = max(time.perf_counter() - start, 1e-9)
        busy = " ".join(f"{stage} {seconds:.0f}s" for stage, seconds in self.busy.items())
        bar.set_postfix_str(f"{self.decoded_frames / elapsed:.0f} frames/s, busy: {busy}", refresh=False)
