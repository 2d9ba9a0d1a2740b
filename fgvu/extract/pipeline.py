"""Stage 1 end to end: dataset -> decoded grid frames -> frozen encoders -> resumable Zarr cache.

For each part of the dataset (one writer each), every video source is probed, planned
(`SamplingPlan.layout`), decoded once in a background thread, and encoded on its grids
(`encoding.SourceEncoder`), once per view of it: the whole frame, or each half that an item
sees (Aff-Wild2 `_left`/`_right` share one video and see its left and right halves). Each
item is then appended with its own features and targets and committed. Frames the source has
no image for (a missing face crop) have their targets masked and are counted per video.
Re-running skips committed videos; a video that cannot be read is recorded in the part's
failure list and the run goes on. Each failure is logged once and listed once in the summary,
which also says what the dataset left out, which videos were turned upright and which have a
variable frame rate. An OS error (a full disk) ends the run with one line naming the file; the
next run resumes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fgvu.errors import FgvuError, StorageError, storage_error
from fgvu.extract.config import ExtractConfig, ExtractConfigError
from fgvu.extract.encoding import BatchSizes, EncodeCounts, EncoderSet, SourceEncoder, conversion_size
from fgvu.extract.parts import SourceGroup, split_parts
from fgvu.extract.prefetch import End, Failed, Frame, Start, prefetch
from fgvu.extract.video_source import crop_half
from fgvu.sampling import SamplingPlan, WindowLayout

if TYPE_CHECKING:
    from fgvu.extract.datasets import DatasetAdapter
    from fgvu.extract.video_source import VideoInfo

log = logging.getLogger(__name__)


@dataclass
class ExtractSummary:
    """What one extraction run did."""

    out: Path
    parts: list[int] = field(default_factory=list)
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0  # already committed before this run
    failures: list[tuple[str, str]] = field(default_factory=list)  # (video, reason)
    known_failures: set[str] = field(default_factory=set)  # of the failed: those an earlier run recorded too
    notices: list[str] = field(default_factory=list)  # what the dataset left out (adapter notices)
    turned: list[str] = field(default_factory=list)  # "file (rotated -90 degrees)": display matrices applied
    variable_rate: list[str] = field(default_factory=list)  # "file (variable frame rate: ...)"
    windows: int = 0
    frames: int = 0  # frames decoded
    warnings: int = 0  # annotation warnings
    seconds: float = 0.0
    counts: EncodeCounts = field(default_factory=EncodeCounts)
    inputs: Counter = field(default_factory=Counter)  # extracted items by VideoItem.input_kind
    missing_frames: int = 0  # frames without an image (no face crop), masked
    missing_videos: int = 0  # items with at least one such frame

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def windows_per_s(self) -> float:
        return self.windows / self.seconds if self.seconds > 0 else 0.0

    @property
    def known_failed(self) -> int:
        """How many of the failures are known-broken videos, recorded as failed by an earlier run."""
        return len(self.known_failures)

    @property
    def all_failed(self) -> bool:
        """True when this run tried videos and none succeeded, and not every failure was known from an
        earlier run (a complete cache whose only leftovers are known-broken files is not a failed run)."""
        return self.failed > self.known_failed and self.succeeded == 0

    def merge(self, other: "ExtractSummary") -> None:
        """Add another part's summary into this one."""
        self.parts += other.parts
        for name in ("succeeded", "failed", "skipped", "windows", "frames", "warnings", "seconds", "missing_frames",
                     "missing_videos"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures
        self.known_failures |= other.known_failures
        self.notices += [n for n in other.notices if n not in self.notices]  # every part lists the same
        self.turned += other.turned
        self.variable_rate += other.variable_rate
        self.counts.add(other.counts)
        self.inputs.update(other.inputs)

    def lines(self) -> list[str]:
        """The end-of-run report, one line each."""
        parts = ", ".join(str(p) for p in self.parts)
        known = f" ({self.known_failed} known from earlier runs)" if self.known_failed else ""
        out = [
            f"cache {self.out} (part {parts}): {self.succeeded} videos extracted, {self.failed} failed{known}, "
            f"{self.skipped} skipped (already committed)",
            f"{self.windows} windows, {self.frames} frames decoded in {self.seconds:.1f} s "
            f"({self.frames_per_s:.1f} frames/s, {self.windows_per_s:.2f} windows/s); "
            f"{self.warnings} annotation warnings",
        ]
        if self.inputs:
            out.append(self.input_line())
        out += [f"  failed: {video}: {reason}" + (" (failed before too)" if video in self.known_failures else "")
                for video, reason in self.failures]
        out += self.notices
        for what, files in (("turned upright from their display matrix", self.turned),
                            ("with a variable frame rate", self.variable_rate)):
            if files:
                out.append(f"{len(files)} videos {what}: {'; '.join(files)}")
        return out

    def input_line(self) -> str:
        """What the encoders saw: how many items read face crops, half frames and whole frames."""
        described = {"frame folder": "from frame folders (face crops)",
                     "half frame": "from their half of a shared video (_left/_right without crops)",
                     "whole frame": "from whole frames"}
        kinds = [f"{self.inputs[kind]} {what}" for kind, what in described.items() if self.inputs[kind]]
        line = "inputs: " + ", ".join(kinds)
        if self.missing_frames:
            line += (f"; {self.missing_frames} frames of {self.missing_videos} videos have no image (no face crop): "
                     "masked, never trained on or scored")
        return line


# ---- setup -----------------------------------------------------------------------------


def build_encoders(cfg: ExtractConfig, with_captioner: bool = True) -> EncoderSet:
    """The encoders named by `cfg.encoders`, with per-role overrides, on `cfg.device`."""
    from fgvu.extract.encoders.registry import (
        ENCODER_SETS, build_captioner, build_image_text_encoder, build_video_encoder,
    )

    if cfg.encoders not in ENCODER_SETS:
        raise ExtractConfigError(f"unknown encoder set {cfg.encoders!r}; known: {', '.join(ENCODER_SETS)}")
    names = dict(ENCODER_SETS[cfg.encoders])
    for role, override in (("video", cfg.video_encoder), ("image", cfg.image_encoder), ("captioner", cfg.captioner)):
        if override:
            names[role] = override
    captioner = None
    if with_captioner:
        captioner = build_captioner(names["captioner"], device=cfg.device, max_new_tokens=cfg.max_new_tokens,
                                    batch_size=cfg.caption_batch)
    return EncoderSet(
        video=build_video_encoder(names["video"], device=cfg.device, batch_size=cfg.clip_batch),
        image_text=build_image_text_encoder(names["image"], device=cfg.device, batch_size=cfg.image_batch,
                                            resize=cfg.image_resize),
        captioner=captioner,
    )


def build_dataset(cfg: ExtractConfig):
    """The dataset adapter and its items (first `cfg.limit` by name)."""
    from fgvu.extract.datasets import build_adapter

    if cfg.frames != "auto" and cfg.dataset != "aff-wild2":
        raise ExtractConfigError(f"--frames {cfg.frames} is only available for aff-wild2")
    folder = cfg.dataset == "folder"
    options = {"frames": cfg.frames if cfg.dataset == "aff-wild2" else None,
               "labels": cfg.labels if folder else None, "task": cfg.task if folder else None}
    for name, value in (("--labels", cfg.labels), ("--task", cfg.task)):
        if value and not folder:
            raise ExtractConfigError(f"{name} is only used by the folder dataset")
    adapter = build_adapter(cfg.dataset, cfg.root_path, **options)
    items = sorted(adapter.items(), key=lambda item: item.name)
    if cfg.limit is not None:
        items = items[: cfg.limit]
    return adapter, items


class ReusedCaptions:
    """Captions taken from another cache's captions.jsonl, looked up by (video, frame)."""

    def __init__(self, cache: Path, plan: SamplingPlan):
        from math import gcd

        from fgvu.cache import read_captions, read_spec

        self.cache = Path(cache)
        self.spec = read_spec(self.cache)
        if "captioner" not in self.spec.encoders:
            raise ExtractConfigError(f"--reuse-captions: cache {self.cache} records no captioner")
        # Caption frames lie on multiples of gcd(stride, caption_every); ours must be among theirs.
        old, new = self.spec.sampling, plan
        if gcd(new.stride, new.caption_every) % gcd(old.stride, old.caption_every):
            raise ExtractConfigError(
                f"--reuse-captions: cache {self.cache} was captioned every {old.caption_every} frames at stride "
                f"{old.stride}; this run needs captions every {new.caption_every} frames at stride {new.stride}, "
                "which that cache does not have")
        self.table = read_captions(self.cache)

    def for_source(self, names: list[str], frames: np.ndarray) -> list[str]:
        """The caption of each frame, from the first of `names` that has one; CacheError if none does."""
        from fgvu.cache import CacheError

        out = []
        for frame in frames.tolist():
            text = next((self.table[(n, frame)] for n in names if (n, frame) in self.table), None)
            if text is None:
                raise CacheError(f"--reuse-captions: cache {self.cache} has no caption for video "
                                 f"{' / '.join(names)} frame {frame}")
            out.append(text)
        return out


def caption_prompt(cfg: ExtractConfig, adapter: DatasetAdapter, reused: ReusedCaptions | None) -> str:
    """The prompt recorded in the cache: the reused cache's, --caption-prompt, or the adapter's default."""
    if reused is not None:
        if cfg.caption_prompt is not None and cfg.caption_prompt != reused.spec.caption_prompt:
            raise ExtractConfigError(
                f"--caption-prompt differs from the prompt of the reused captions in {reused.cache} "
                f"({reused.spec.caption_prompt!r}); drop one of the two options"
            )
        return reused.spec.caption_prompt
    if cfg.caption_prompt is not None:
        return cfg.caption_prompt
    return adapter.default_prompt


def make_spec(cfg: ExtractConfig, task: str, encoders: EncoderSet, prompt: str,
              reused: ReusedCaptions | None = None):
    """The CacheSpec of this run: what cache.json must say for the run to append."""
    from fgvu.cache import CacheSpec

    captioner_fp = reused.spec.encoders["captioner"] if reused is not None else None
    return CacheSpec(dataset=cfg.dataset, task=task, sampling=cfg.sampling,
                     encoders=encoders.fingerprints(captioner_fp), dims=encoders.dims, caption_prompt=prompt)


# ---- one part ----------------------------------------------------------------------------


@dataclass
class PreparedSource:
    """A probed source: its layout, per-item targets (or the error reading them), reused captions per
    view, and the frames it has no image for."""

    info: VideoInfo
    layout: WindowLayout
    targets: dict[str, object]
    captions: dict[str | None, list[str]] | None
    missing: list[int] = field(default_factory=list)

    def ok(self, items) -> list:
        """The items whose targets could be read."""
        return [item for item in items if not isinstance(self.targets[item.name], Exception)]


def views(items) -> dict[str | None, list]:
    """Items by the part of the frame they see (None: the whole frame, "left", "right"), in order."""
    out: dict[str | None, list] = {}
    for item in items:
        out.setdefault(item.half, []).append(item)
    return out


class PartRun:
    """Extract one part into its writer."""

    def __init__(self, cfg: ExtractConfig, spec, adapter, encoders: EncoderSet, prompt: str,
                 reused: ReusedCaptions | None, part: int):
        self.cfg, self.spec, self.adapter, self.encoders = cfg, spec, adapter, encoders
        self.prompt, self.reused, self.part = prompt, reused, part
        self.plan: SamplingPlan = spec.sampling
        self.side = encoders.input_side()
        self.batches = BatchSizes(cfg.image_batch, cfg.clip_batch, cfg.caption_batch, cfg.text_batch)

    def prepare(self, group: SourceGroup):
        """Runs in the decode thread: probe, plan, targets, reused captions, then the frame iterator."""
        from fgvu.extract.datasets.base import mask_frames
        from fgvu.extract.video_source import open_video

        # a frame folder's length comes from the dataset (its annotation), not from its file names
        n_frames = self.adapter.frame_count(group.items[0])
        source = open_video(group.source, **({} if n_frames is None else {"n_frames": n_frames}))
        info = source.info
        layout = self.plan.layout(info.n_frames)
        targets = {}
        for item in group.items:
            try:
                targets[item.name] = mask_frames(self.adapter.load_targets(item, info.n_frames), source.missing)
                targets[item.name].warnings += list(source.notes)
            except FgvuError as e:
                targets[item.name] = e
        captions = None
        if self.reused is not None:
            captions = {half: self.reused.for_source([i.name for i in items], layout.caption_frames)
                        for half, items in views(group.items).items()}
        header = PreparedSource(info, layout, targets, captions, list(source.missing))
        if all(isinstance(t, Exception) for t in targets.values()):
            return header, None  # nothing to write: do not decode
        halves = any(item.half is not None for item in group.items)
        size = conversion_size(info.height, info.width, self.side, halves=halves)
        return header, source.frames(layout.needed_frames(), size=size)

    def run(self, items: list) -> ExtractSummary:
        from tqdm import tqdm

        from fgvu.cache import PartWriter, committed_videos, iter_committed_parts

        cfg, out = self.cfg, self.cfg.out_path
        summary = ExtractSummary(out=out, parts=[self.part], notices=self.adapter.notices())
        groups = split_parts(items, cfg.parts)[self.part]
        start = time.perf_counter()
        with PartWriter(out, self.spec, self.part, parts=cfg.parts) as writer:
            known = {f["video"] for part in iter_committed_parts(out) for f in part.failures}
            done = writer.committed_videos | set(committed_videos(out, exclude=writer.path))
            pending = [SourceGroup(g.source, [i for i in g.items if i.name not in done]) for g in groups]
            pending = [g for g in pending if g.items]
            n_items = sum(len(g.items) for g in groups)
            summary.skipped = n_items - sum(len(g.items) for g in pending)
            bar = tqdm(total=n_items - summary.skipped, unit="video", desc=f"extract part {self.part}",
                       disable=not cfg.progress, dynamic_ncols=True)

            failed: set[str] = set()

            def fail(names: list[str], error: BaseException) -> None:
                reason = str(error) if isinstance(error, FgvuError) else f"{type(error).__name__}: {error}"
                names = [n for n in names if n not in failed]  # once, even if decoding fails after encoding did
                for name in names:
                    failed.add(name)
                    writer.record_failure(name, reason)
                    summary.failures.append((name, reason))
                    if name in known:
                        summary.known_failures.add(name)
                    log.warning("video %s failed: %s", name, reason)
                summary.failed += len(names)
                bar.update(len(names))

            # the current source's encoders, one per view (None: the whole frame, or a half); a view
            # leaves when its encoder fails
            encoders: dict[str | None, SourceEncoder] = {}
            current: tuple[SourceGroup, PreparedSource] | None = None
            # closing() stops the decode thread even when encoding raises
            with bar, contextlib.closing(prefetch(pending, self.prepare, cfg.prefetch)) as events:
                for event in events:
                    if isinstance(event, Frame):
                        for half, encoder in list(encoders.items()):
                            try:
                                encoder.add(event.index, crop_half(event.image, half))
                            except FgvuError as e:  # an encoder refused this view: fail its items, go on
                                fail([i.name for i in current[1].ok(views(current[0].items)[half])], e)
                                del encoders[half]
                    elif isinstance(event, Start):
                        current, encoders = (event.job, event.header), {}
                        header = event.header
                        _note_source(header.info, summary)
                        for name, error in header.targets.items():
                            if isinstance(error, Exception):
                                fail([name], error)
                        for half, items in views(header.ok(event.job.items)).items():
                            captions = header.captions[half] if header.captions is not None else None
                            encoders[half] = SourceEncoder(self.encoders, header.layout, self.prompt, self.batches,
                                                           captions)
                    elif isinstance(event, Failed):
                        items = event.job.items
                        if current is not None and current[0] is event.job:  # failed while decoding
                            items = [i for i in current[1].ok(items) if i.half in encoders]
                        fail([i.name for i in items], event.error)
                        current, encoders = None, {}
                    elif isinstance(event, End):
                        if encoders:
                            self._write(writer, event.job, current[1], encoders, summary, fail, bar)
                            elapsed = max(time.perf_counter() - start, 1e-9)
                            bar.set_postfix({"windows": summary.windows, "frames/s": f"{summary.frames / elapsed:.0f}"})
                        current, encoders = None, {}
            writer.mark_finished()  # the part's list is done: readers may now count it complete
        summary.seconds = time.perf_counter() - start
        return summary

    def _write(self, writer, group: SourceGroup, header: PreparedSource, encoders: dict[str | None, SourceEncoder],
               summary: ExtractSummary, fail, bar) -> None:
        """Finish each view's encoding and append each of its items with its own targets."""
        summary.frames += header.info.n_frames
        by_view = views(header.ok(group.items))
        for half, encoder in encoders.items():
            try:
                features = encoder.finish()
            except FgvuError as e:
                fail([item.name for item in by_view[half]], e)
                continue
            summary.counts.add(features.counts)
            for item in by_view[half]:
                targets = header.targets[item.name]
                for warning in targets.warnings:
                    log.warning("%s", warning)
                summary.warnings += len(targets.warnings)
                try:
                    writer.append_video(video_record(item, header, features))
                except StorageError:  # a full disk stops the run (one line); a re-run resumes
                    raise
                except FgvuError as e:  # the record was refused before anything was written
                    fail([item.name], e)
                    continue
                summary.succeeded += 1
                summary.windows += header.layout.n_windows
                summary.inputs[item.input_kind] += 1
                if header.missing:
                    summary.missing_frames += len(header.missing)
                    summary.missing_videos += 1
                    log.debug("%s: %d of %d frames have no image in %s (first: frame %d); their targets are masked",
                             item.name, len(header.missing), header.layout.n_frames, header.info.path,
                             header.missing[0])
                bar.update(1)


def video_record(item, header: PreparedSource, features):
    """The cache record of one item: its view's features, its own targets, its view's frame size."""
    from fgvu.cache import VideoRecord

    lay, info = header.layout, header.info
    width = {None: info.width, "left": info.width // 2}.get(item.half, info.width - info.width // 2)
    targets = header.targets[item.name]
    return VideoRecord(
        name=item.name, split=item.split, n_frames=lay.n_frames, fps=float(info.fps),
        width=int(width), height=int(info.height), missing_frames=len(header.missing),
        window_start=lay.starts, image_index=lay.image_index, caption_index=lay.caption_index,
        valid=lay.valid, targets=targets.values, target_mask=targets.mask,
        image_frame=lay.image_frames, caption_frame=lay.caption_frames, captions=features.captions,
        **features.streams(),
    )


def _note_source(info: VideoInfo, summary: ExtractSummary) -> None:
    """Record a display matrix applied or a variable frame rate for the summary."""
    if not info.orientation.upright:
        summary.turned.append(f"{info.path.name} ({info.orientation.describe()})")
    if info.variable_rate is not None:
        summary.variable_rate.append(f"{info.path.name} ({info.variable_rate.describe()})")


# ---- entry point -------------------------------------------------------------------------


def run_extract(cfg: ExtractConfig, encoders: EncoderSet | None = None, adapter=None) -> ExtractSummary:
    """Extract the configured part(s) of a dataset into the cache; returns what was done.

    `encoders` and `adapter` replace the ones `cfg` names (tests, benchmarks). Setup problems
    (missing dataset, incompatible cache, part locked) raise FgvuError subclasses; a video that
    cannot be read is a failure in the summary, not an exception.
    """
    if cfg.engine == "ray":
        return run_with_ray(cfg)
    try:
        return _run_local(cfg, encoders, adapter)
    except OSError as e:  # a full disk, a read-only or forbidden --out: one line, and the next run resumes
        raise storage_error(e, cfg.out_path, "run the same command again: it resumes at the first video "
                                             "not yet committed") from None


def _run_local(cfg: ExtractConfig, encoders: EncoderSet | None, adapter) -> ExtractSummary:
    if adapter is None:
        adapter, items = build_dataset(cfg)
    else:
        items = sorted(adapter.items(), key=lambda item: item.name)[: cfg.limit]
    reused = ReusedCaptions(cfg.reuse_captions_path, cfg.sampling) if cfg.reuse_captions_path is not None else None
    if reused is not None and reused.cache.resolve() == cfg.out_path.resolve():
        raise ExtractConfigError(f"--reuse-captions names the output cache {cfg.out_path}; pass the cache "
                                 "the captions come from, and a new --out for the new encoders")
    prompt = caption_prompt(cfg, adapter, reused)
    if encoders is None:
        encoders = build_encoders(cfg, with_captioner=reused is None)
    elif reused is None and encoders.captioner is None:
        raise ExtractConfigError("no captioner given and --reuse-captions not set")
    spec = make_spec(cfg, adapter.task, encoders, prompt, reused)
    summary = ExtractSummary(out=cfg.out_path)
    for part in cfg.parts_to_run():
        summary.merge(PartRun(cfg, spec, adapter, encoders, prompt, reused, part).run(items))
    return summary


def run_with_ray(cfg: ExtractConfig) -> ExtractSummary:
    """Run each part as a Ray task (one writer per part); the cache must be on storage all nodes share."""
    try:
        import ray
    except ImportError:
        raise ExtractConfigError("--engine ray needs Ray, which is not installed: pip install 'fgvu[ray]'") from None
    ray.init(ignore_reinit_error=True)  # joins the cluster named by RAY_ADDRESS, else starts a local one
    gpus = 1 if cfg.device != "cpu" and ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_gpus=gpus)(_extract_part)
    refs = [task.remote(replace(cfg, engine="local", part=part, progress=False)) for part in cfg.parts_to_run()]
    summary = ExtractSummary(out=cfg.out_path)
    for result in ray.get(refs):
        summary.merge(result)
    return summary


def _extract_part(cfg: ExtractConfig) -> ExtractSummary:
    return run_extract(cfg)
