"""Stage 1 end to end: dataset -> decoded grid frames -> frozen encoders -> resumable Zarr cache.

For each part of the dataset (one writer each), every video source is probed, planned
(`SamplingPlan.layout`), decoded once in a background thread (or by `--decode-workers`
processes, `decode_workers`), and encoded on its grids (`encoding.SourceEncoder`), once per
view of it: the whole frame, or each half that an item sees (Aff-Wild2 `_left`/`_right` share
one video and see its left and right halves). Each item is then appended with its own features
and targets and committed. Frames the source has no image for (a missing face crop) have their
targets masked and are counted per video. Re-running skips committed videos; a video that
cannot be read is recorded in the part's failure list and the run goes on. Each failure is
logged once and listed once in the summary (`summary.ExtractSummary`), which also says what the
dataset left out, which videos were turned upright and which have a variable frame rate. An OS
error (a full disk) ends the run with one line naming the file; the next run resumes. With an
audio encoder, the decode thread also reads each source's soundtrack (`audio_source`); a bad
soundtrack is masked and counted, never a failure. `--engine ray` hands the same work to
`ray_engine`; `--only audio --into CACHE` goes to `add_stream` instead.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fgvu.cache.location import absolute, cache_path
from fgvu.errors import FgvuError, StorageError, storage_error
from fgvu.extract.config import ExtractConfig, ExtractConfigError
from fgvu.extract.encoding import AudioInput, BatchSizes, EncoderSet, SourceEncoder
from fgvu.extract.parts import SourceGroup, split_parts
from fgvu.extract.prefetch import End, Failed, Frame, Start, prefetch
from fgvu.extract.sources import PreparedSource, SourcePreparer, failure_reason, video_record, views
from fgvu.extract.summary import ExtractSummary
from fgvu.extract.video_source import crop_half
from fgvu.sampling import SamplingPlan
from fgvu.threads import torch_threads

if TYPE_CHECKING:
    from fgvu.extract.datasets import DatasetAdapter

log = logging.getLogger(__name__)


# ---- setup -----------------------------------------------------------------------------


def encoder_names(cfg: ExtractConfig) -> dict[str, str]:
    """Role (video, image, captioner) -> encoder name: the set `cfg.encoders`, with per-role overrides."""
    from fgvu.extract.encoders.registry import ENCODER_SETS

    if cfg.encoders not in ENCODER_SETS:
        raise ExtractConfigError(f"unknown encoder set {cfg.encoders!r}; known: {', '.join(ENCODER_SETS)}")
    names = dict(ENCODER_SETS[cfg.encoders])
    for role, override in (("video", cfg.video_encoder), ("image", cfg.image_encoder), ("captioner", cfg.captioner)):
        if override:
            names[role] = override
    return names


def build_encoder(role: str, cfg: ExtractConfig):
    """The encoder of one role (video, image, captioner) that `cfg` names, on `cfg.device`."""
    from fgvu.extract.encoders.registry import build_captioner, build_image_text_encoder, build_video_encoder

    name = encoder_names(cfg)[role]
    if role == "video":
        return build_video_encoder(name, device=cfg.device, batch_size=cfg.clip_batch)
    if role == "image":
        return build_image_text_encoder(name, device=cfg.device, batch_size=cfg.image_batch, resize=cfg.image_resize)
    return build_captioner(name, device=cfg.device, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.caption_batch)


def build_audio_encoder(cfg: ExtractConfig):
    """The audio encoder `cfg` names (`--audio-encoder`, else the set's), or None for no audio."""
    from fgvu.extract.encoders.registry import audio_encoder_name, build_audio_encoder as build

    name = audio_encoder_name(cfg.encoders, cfg.audio_encoder)
    return build(name, device=cfg.device, batch_size=cfg.audio_batch) if name else None


def build_encoders(cfg: ExtractConfig, with_captioner: bool = True) -> EncoderSet:
    """The encoders named by `cfg.encoders`, with per-role overrides, on `cfg.device`."""
    encoder_names(cfg)  # an unknown set fails before any model loads
    return EncoderSet(video=build_encoder("video", cfg), image_text=build_encoder("image", cfg),
                      captioner=build_encoder("captioner", cfg) if with_captioner else None,
                      audio=build_audio_encoder(cfg))


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

        self.cache = cache_path(cache)
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


class PartRun:
    """Extract one part into its writer."""

    def __init__(self, cfg: ExtractConfig, spec, adapter, encoders: EncoderSet, prompt: str,
                 reused: ReusedCaptions | None, part: int):
        self.cfg, self.spec, self.adapter, self.encoders = cfg, spec, adapter, encoders
        self.prompt, self.reused, self.part = prompt, reused, part
        self.plan: SamplingPlan = spec.sampling
        self.batches = BatchSizes(cfg.image_batch, cfg.clip_batch, cfg.caption_batch, cfg.text_batch)
        self.prepare = SourcePreparer(self.plan, adapter, encoders.input_side(), reused,
                                      audio=encoders.audio is not None)

    def run(self, items: list) -> ExtractSummary:
        from tqdm import tqdm

        from fgvu.cache import PartWriter, committed_videos, iter_committed_parts

        cfg, out = self.cfg, self.cfg.out_path
        summary = ExtractSummary(out=out, parts=[self.part], notices=self.adapter.notices())
        groups = split_parts(items, cfg.parts)[self.part]
        start = time.perf_counter()
        with PartWriter(out, self.spec, self.part, parts=cfg.parts, lease_seconds=cfg.lease_seconds) as writer:
            known = {f["video"] for part in iter_committed_parts(out) for f in part.failures}
            done = writer.committed_videos | set(committed_videos(out, exclude=writer.path))
            pending = [SourceGroup(g.source, [i for i in g.items if i.name not in done]) for g in groups]
            pending = [g for g in pending if g.items]
            n_items = sum(len(g.items) for g in groups)
            summary.skipped = n_items - sum(len(g.items) for g in pending)
            bar = tqdm(total=n_items - summary.skipped, unit="video", desc=f"extract part {self.part}",
                       disable=not cfg.progress, dynamic_ncols=True)

            fail = failure_recorder(writer, summary, bar, known)

            # the current source's encoders, one per view (None: the whole frame, or a half); a view
            # leaves when its encoder fails
            encoders: dict[str | None, SourceEncoder] = {}
            current: tuple[SourceGroup, PreparedSource] | None = None
            # closing() stops the decode thread even when encoding raises
            with bar, contextlib.closing(self._decoded(pending)) as events:
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
                        summary.note_source(header.info)
                        for name, error in header.targets.items():
                            if isinstance(error, Exception):
                                fail([name], error)
                        for half, items in views(header.ok(event.job.items)).items():
                            captions = header.captions[half] if header.captions is not None else None
                            encoders[half] = SourceEncoder(self.encoders, header.layout, self.prompt, self.batches,
                                                           captions, self._audio_input(header))
                    elif isinstance(event, Failed):
                        items = event.job.items
                        if current is not None and current[0] is event.job:  # failed while decoding
                            items = [i for i in current[1].ok(items) if i.half in encoders]
                        fail([i.name for i in items], event.error)
                        current, encoders = None, {}
                    elif isinstance(event, End):
                        if encoders:
                            write_source(writer, event.job, current[1], {h: e.finish for h, e in encoders.items()},
                                         summary, fail, bar)
                            elapsed = max(time.perf_counter() - start, 1e-9)
                            bar.set_postfix({"windows": summary.windows, "frames/s": f"{summary.frames / elapsed:.0f}"})
                        current, encoders = None, {}
            writer.mark_finished()  # the part's list is done: readers may now count it complete
        summary.seconds = time.perf_counter() - start
        return summary

    def _audio_input(self, header: PreparedSource) -> AudioInput | None:
        if header.audio is None:
            return None
        return AudioInput(header.audio, float(header.info.fps), self.plan.image_every)

    def _decoded(self, pending: list[SourceGroup]):
        """The decode events of the pending sources: from a thread, or from --decode-workers processes."""
        if self.cfg.decode_workers > 1:
            from fgvu.extract.decode_workers import decode_in_processes

            return decode_in_processes(pending, self.prepare, self.cfg.prefetch, self.cfg.decode_workers)
        return prefetch(pending, self.prepare, self.cfg.prefetch)


def failure_recorder(writer, summary: ExtractSummary, bar, known: set[str] | frozenset = frozenset()):
    """fail(names, error): record each video's failure once, in its part and in the summary, and log it.

    `known` are the videos an earlier run recorded as failed (the summary counts them apart)."""
    failed: set[str] = set()

    def fail(names: list[str], error: BaseException) -> None:
        reason = failure_reason(error)
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

    return fail


def write_source(writer, group: SourceGroup, header: PreparedSource, finishers: dict[str | None, Callable],
                 summary: ExtractSummary, fail, bar) -> None:
    """Finish each view's features (`finishers`: view -> a function returning its SourceFeatures) and
    append each of its items with its own targets. A finisher raising a FgvuError fails its view's items."""
    summary.frames += header.info.n_frames
    if header.audio is not None:
        summary.audio.add(header.audio)
        for issue in header.audio.issues:
            log.warning("audio: %s", issue.detail)
    by_view = views(header.ok(group.items))
    for half, finish in finishers.items():
        try:
            features = finish()
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


# ---- entry point -------------------------------------------------------------------------


def run_extract(cfg: ExtractConfig, encoders: EncoderSet | None = None, adapter=None) -> ExtractSummary:
    """Extract the configured part(s) of a dataset into the cache; returns what was done.

    `encoders` and `adapter` replace the ones `cfg` names (tests, benchmarks). Setup problems
    (missing dataset, incompatible cache, part locked) raise FgvuError subclasses; a video that
    cannot be read is a failure in the summary, not an exception.
    """
    if cfg.only is not None:
        from fgvu.extract.add_stream import add_stream

        return add_stream(cfg, audio_encoder=encoders.audio if encoders is not None else None, adapter=adapter)
    if cfg.engine == "ray":
        from fgvu.extract.ray_engine import run_ray

        return run_ray(cfg, adapter=adapter)
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
    if reused is not None and absolute(reused.cache) == absolute(cfg.out_path):
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
