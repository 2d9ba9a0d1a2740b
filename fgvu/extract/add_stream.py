"""`fgvu extract --only audio --into CACHE`: add the audio stream to an existing cache.

The other encoders do not run and the cache's other arrays are not touched. For every
committed video, part by part, the soundtrack of its source (found through the dataset
adapter, by video name) is decoded, encoded once and pooled onto the image-grid rows the
cache already holds for that video; `fgvu.cache.extend` appends the rows exactly once and
makes them visible in cache.json when every part has them. Interrupted, it resumes where it
stopped; videos committed by an extraction meanwhile are included before it finishes.
Sources that cannot be found or have no usable sound get masked rows, counted in the summary.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from fgvu.extract.audio_features import AudioCounts, StepSpans, audio_rows
from fgvu.extract.audio_source import AudioIssue, AudioReport, AudioTrack, read_audio, track_samples
from fgvu.extract.config import ExtractConfig, ExtractConfigError
from fgvu.modalities import BY_NAME

log = logging.getLogger(__name__)
MAX_ROUNDS = 10  # finishing waits for videos committed meanwhile; a cache growing this long is still busy


@dataclass
class AddStreamSummary:
    """What one `--only` run did."""

    cache: Path
    stream: str
    added: int = 0  # videos given their rows by this run
    skipped: int = 0  # videos that had them from an earlier, interrupted run
    already: bool = False  # the cache had the stream before this run
    seconds: float = 0.0
    audio: AudioReport = field(default_factory=AudioReport)
    counts: AudioCounts = field(default_factory=AudioCounts)

    @property
    def all_failed(self) -> bool:
        return False  # a video without sound gets masked rows; it does not fail

    def lines(self) -> list[str]:
        if self.already:
            return [f"cache {self.cache} already has {self.stream}; nothing to do"]
        hours = self.counts.seconds / 3600
        return [f"cache {self.cache}: {self.stream} added to {self.added} videos ({self.skipped} done by an earlier "
                f"run) in {self.seconds:.1f} s; {self.counts.seconds:.0f} s of audio "
                f"({self.seconds / hours if hours else 0:.0f} s per hour of audio)", *self.audio.lines()]


def add_stream(cfg: ExtractConfig, audio_encoder=None, adapter=None) -> AddStreamSummary:
    """Add the stream `cfg.only` to the committed videos of `cfg.into`; `audio_encoder` and
    `adapter` replace the ones `cfg` names (tests)."""
    from tqdm import tqdm

    from fgvu.cache import read_spec
    from fgvu.cache.extend import CacheExtension
    from fgvu.extract.encoders.registry import audio_encoder_name, build_audio_encoder
    from fgvu.extract.pipeline import build_dataset

    cache = cfg.into_path
    spec = read_spec(cache)
    if spec.dataset != cfg.dataset:
        raise ExtractConfigError(f"--into {cache} is a {spec.dataset} cache; this run reads --dataset {cfg.dataset}")
    if adapter is None:
        adapter, items = build_dataset(cfg)
    else:
        items = list(adapter.items())
    sources = {item.name: Path(item.source) for item in items}
    if audio_encoder is None:
        name = audio_encoder_name(cfg.encoders, cfg.audio_encoder, needed=True)
        audio_encoder = build_audio_encoder(name, device=cfg.device, batch_size=cfg.audio_batch)
    modality = BY_NAME[cfg.only]
    ext = CacheExtension(cache, modality.letter, audio_encoder.dim, audio_encoder.fingerprint)
    summary = AddStreamSummary(cache, modality.name, already=ext.done)
    if ext.done:
        return summary
    every = spec.sampling.image_every
    start = time.perf_counter()
    last: tuple[Path | None, AudioTrack | None] = (None, None)  # _left/_right share one soundtrack
    for round_ in range(MAX_ROUNDS):
        for part in ext.part_paths():
            with ext.open_part(part) as writer:
                pending = writer.pending()
                if round_ == 0:
                    summary.skipped += writer.progress["videos"]
                bar = tqdm(pending, unit="video", desc=f"add {modality.name} {part.name}",
                           disable=not cfg.progress or not pending, dynamic_ncols=True)
                for video in bar:
                    source = sources.get(video.name)
                    if source is None or last[0] != source:
                        last = (source, _soundtrack(source, video, cache))
                        summary.audio.add(last[1])
                        for issue in last[1].issues:
                            log.warning("audio: %s", issue.detail)
                    spans = StepSpans(video.grid_frames, every, video.n_frames, video.fps)
                    rows, mask = audio_rows(audio_encoder, last[1], spans, summary.counts)
                    writer.append(video, {modality.name: rows, modality.mask_key: mask})
                    summary.added += 1
        if not ext.finish():
            summary.seconds = time.perf_counter() - start
            return summary
    raise ExtractConfigError(f"cache {cache}: videos kept being committed while {modality.name} was added; "
                             "run again when the extraction has finished (the work so far is kept)")


def _soundtrack(source: Path | None, video, cache: Path) -> AudioTrack:
    """The video's soundtrack, or a masked one when the dataset no longer lists its source."""
    if source is None:
        return AudioTrack.empty(track_samples(video.n_frames, video.fps), AudioIssue(
            "source not found", f"{cache}: video {video.name!r} is not in the dataset any more; audio masked"))
    return read_audio(source, video.n_frames, video.fps)
