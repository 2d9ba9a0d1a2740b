"""Stage 1 end to end: dataset -> decoded grid frames -> frozen encoders -> resumable Zarr cache.

For each part of the dataset (one writer each), every video source is probed, planned
(`SamplingPlan.layout`), decoded once in a background thread, and encoded on its grids
(`encoding.SourceEncoder`). Each item of the source (Aff-Wild2 `_left`/`_right` share one) is
then appended with its own targets and committed. Re-running skips committed videos; a video
that cannot be read is recorded in the part's failure list and the run goes on.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fgvu.errors import FgvuError
from fgvu.extract.config import ExtractConfig, ExtractConfigError
from fgvu.extract.encoding import BatchSizes, EncodeCounts, EncoderSet, SourceEncoder, conversion_size
from fgvu.extract.parts import SourceGroup, split_parts
from fgvu.extract.prefetch import End, Failed, Frame, Start, prefetch
from fgvu.sampling import SamplingPlan, WindowLayout
from fgvu.threads import torch_threads

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
    windows: int = 0
    frames: int = 0  # frames decoded
    warnings: int = 0  # annotation warnings
    seconds: float = 0.0
    counts: EncodeCounts = field(default_factory=EncodeCounts)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def windows_per_s(self) -> float:
        return self.windows / self.seconds if self.seconds > 0 else 0.0

    @property
    def all_failed(self) -> bool:
        """True when this run tried videos and none succeeded."""
        return self.failed > 0 and self.succeeded == 0

    def merge(self, other: "ExtractSummary") -> None:
        """Add another part's summary into this one."""
        self.parts += other.parts
        for name in ("succeeded", "failed", "skipped", "windows", "frames", "warnings", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures
        self.counts.add(other.counts)

    def lines(self) -> list[str]:
        """The end-of-run report, one line each."""
        parts = ", ".join(str(p) for p in self.parts)
        out = [
            f"cache {self.out} (part {parts}): {self.succeeded} videos extracted, {self.failed} failed, "
            f"{self.skipped} skipped (already committed)",
            f"{self.windows} windows, {self.frames} frames decoded in {self.seconds:.1f} s "
            f"({self.frames_per_s:.1f} frames/s, {self.windows_per_s:.2f} windows/s); "
            f"{self.warnings} annotation warnings",
        ]
        out += [f"  failed: {video}: {reason}" for video, reason in self.failures]
        return out


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
        image_text=build_image_text_encoder(names["image"], device=cfg.device, batch_size=cfg.image_batch),
        captioner=captioner,
    )


def build_dataset(cfg: ExtractConfig):
    """The dataset adapter and its items (first `cfg.limit` by name)."""
    from fgvu.extract.datasets import build_adapter

    if cfg.frames != "video" and cfg.dataset != "aff-wild2":
        raise ExtractConfigError(f"--frames {cfg.frames} is only available for aff-wild2")
    options = {"frames": cfg.frames if cfg.dataset == "aff-wild2" else None,
               "labels": cfg.labels if cfg.dataset == "folder" else None}
    if cfg.labels and cfg.dataset != "folder":
        raise ExtractConfigError("--labels is only used by the folder dataset")
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
    """A probed source: its layout, per-item targets (or the error reading them), reused captions."""

    info: VideoInfo
    layout: WindowLayout
    targets: dict[str, object]
    captions: list[str] | None


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
        from fgvu.extract.video_source import open_video

        source = open_video(group.source)
        info = source.info
        layout = self.plan.layout(info.n_frames)
        targets = {}
        for item in group.items:
            try:
                targets[item.name] = self.adapter.load_targets(item, info.n_frames)
            except FgvuError as e:
                targets[item.name] = e
        captions = None
        if self.reused is not None:
            captions = self.reused.for_source([i.name for i in group.items], layout.caption_frames)
        header = PreparedSource(info, layout, targets, captions)
        if all(isinstance(t, Exception) for t in targets.values()):
            return header, None  # nothing to write: do not decode
        size = conversion_size(info.height, info.width, self.side)
        return header, source.frames(layout.needed_frames(), size=size)

    def run(self, items: list) -> ExtractSummary:
        from tqdm import tqdm

        from fgvu.cache import PartWriter, committed_videos

        cfg, out = self.cfg, self.cfg.out_path
        summary = ExtractSummary(out=out, parts=[self.part])
        groups = split_parts(items, cfg.parts)[self.part]
        start = time.perf_counter()
        with PartWriter(out, self.spec, self.part) as writer:
            done = writer.committed_videos | set(committed_videos(out, exclude=writer.path))
            pending = [SourceGroup(g.source, [i for i in g.items if i.name not in done]) for g in groups]
            pending = [g for g in pending if g.items]
            n_items = sum(len(g.items) for g in groups)
            summary.skipped = n_items - sum(len(g.items) for g in pending)
            bar = tqdm(total=n_items - summary.skipped, unit="video", desc=f"extract part {self.part}",
                       disable=not cfg.progress, dynamic_ncols=True)

            def fail(names: list[str], error: BaseException) -> None:
                reason = str(error) if isinstance(error, FgvuError) else f"{type(error).__name__}: {error}"
                for name in names:
                    writer.record_failure(name, reason)
                    summary.failures.append((name, reason))
                    log.warning("video %s failed: %s", name, reason)
                summary.failed += len(names)
                bar.update(len(names))

            encoder: SourceEncoder | None = None  # of the current source, None when nothing to write
            current: tuple[SourceGroup, PreparedSource] | None = None
            # closing() stops the decode thread even when encoding raises
            with bar, contextlib.closing(prefetch(pending, self.prepare, cfg.prefetch)) as events:
                for event in events:
                    if isinstance(event, Frame):
                        if encoder is not None:
                            try:
                                encoder.add(event.index, event.image)
                            except FgvuError as e:  # an encoder refused this source: fail it, go on
                                fail([n for n, t in current[1].targets.items() if not isinstance(t, Exception)], e)
                                encoder = None
                    elif isinstance(event, Start):
                        current, encoder = (event.job, event.header), None
                        bad = {n: t for n, t in event.header.targets.items() if isinstance(t, Exception)}
                        for name, error in bad.items():
                            fail([name], error)
                        if len(bad) < len(event.job.items):
                            encoder = SourceEncoder(self.encoders, event.header.layout, self.prompt, self.batches,
                                                    event.header.captions)
                    elif isinstance(event, Failed):
                        names = [i.name for i in event.job.items]
                        if current is not None and current[0] is event.job:  # failed while decoding
                            names = [n for n in names if not isinstance(current[1].targets[n], Exception)]
                        fail(names, event.error)
                        current, encoder = None, None
                    elif isinstance(event, End):
                        if encoder is not None:
                            self._write(writer, event.job, current[1], encoder, summary, fail, bar)
                            elapsed = max(time.perf_counter() - start, 1e-9)
                            bar.set_postfix({"windows": summary.windows, "frames/s": f"{summary.frames / elapsed:.0f}"})
                        current, encoder = None, None
        summary.seconds = time.perf_counter() - start
        return summary

    def _write(self, writer, group: SourceGroup, header: PreparedSource, encoder: SourceEncoder,
               summary: ExtractSummary, fail, bar) -> None:
        """Finish the source's encoding and append each of its items with its own targets."""
        from fgvu.cache import VideoRecord

        ok = [item for item in group.items if not isinstance(header.targets[item.name], Exception)]
        try:
            features = encoder.finish()
        except FgvuError as e:
            fail([item.name for item in ok], e)
            return
        summary.counts.add(features.counts)
        summary.frames += header.info.n_frames
        lay = header.layout
        for item in ok:
            targets = header.targets[item.name]
            for warning in targets.warnings:
                log.warning("%s", warning)
            summary.warnings += len(targets.warnings)
            record = VideoRecord(
                name=item.name, split=item.split, n_frames=lay.n_frames, fps=float(header.info.fps),
                width=int(header.info.width), height=int(header.info.height),
                window_start=lay.starts, image_index=lay.image_index, caption_index=lay.caption_index,
                valid=lay.valid, targets=targets.values, target_mask=targets.mask,
                image_frame=lay.image_frames, caption_frame=lay.caption_frames, captions=features.captions,
                **features.streams(),
            )
            try:
                writer.append_video(record)
            except FgvuError as e:  # the record was refused before anything was written
                fail([item.name], e)
                continue
            summary.succeeded += 1
            summary.windows += lay.n_windows
            bar.update(1)


# ---- entry point -------------------------------------------------------------------------


def run_extract(cfg: ExtractConfig, encoders: EncoderSet | None = None, adapter=None) -> ExtractSummary:
    """Extract the configured part(s) of a dataset into the cache; returns what was done.

    `encoders` and `adapter` replace the ones `cfg` names (tests, benchmarks). Setup problems
    (missing dataset, incompatible cache, part locked) raise FgvuError subclasses; a video that
    cannot be read is a failure in the summary, not an exception.
    """
    if cfg.engine == "ray":
        return run_with_ray(cfg)
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
    with torch_threads(cfg.torch_threads), frozen_gc():
        for part in cfg.parts_to_run():
            summary.merge(PartRun(cfg, spec, adapter, encoders, prompt, reused, part).run(items))
    return summary


@contextlib.contextmanager
def frozen_gc():
    """Keep the objects alive now (the encoders' modules, parameters, JAX and tokenizer state) out
    of the cyclic garbage collector's scans during the block: with the tiny encoders built, every
    full collection re-scanned 560 k objects for 0.32 CPU-s, and none once they are frozen (issue
    15 profiled 9.6 % of an extraction in the collector). Objects made in the block are collected
    as usual."""
    if gc.get_freeze_count():  # the embedding program manages freezing itself
        yield
        return
    gc.freeze()  # no collection first: it costs more than the little garbage it would spare
    try:
        yield
    finally:
        gc.unfreeze()


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
