"""The Ray engine's chunks and stages, run in this process: the same encoder calls, batch for batch,
and the same features as the local engine's SourceEncoder; bounded memory; early-stop messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fakes import build_fake_encoder, fake_encoders, frame_image
from fgvu.extract.chunks import ChunkCutter, assemble, plan_chunks
from fgvu.extract.config import ExtractConfig
from fgvu.extract.datasets import Targets, VideoItem
from fgvu.extract.encoding import BatchSizes, IncompleteVideoError, SourceEncoder
from fgvu.extract.parts import SourceGroup
from fgvu.extract.ray_stages import STAGES, as_batch, decode_source, rows_of, unpack
from fgvu.extract.sources import PreparedSource
from fgvu.extract.video_source import VideoInfo
from fgvu.sampling import SamplingPlan

PROMPT = "describe"


def _source(n_frames: int, plan: SamplingPlan, stop_at: int | None = None, captions=None):
    layout = plan.layout(n_frames)
    info = VideoInfo(Path("/fake/v.mp4"), n_frames, 25.0, 8, 8)
    targets = {"v": Targets(np.zeros((n_frames, 2), np.float32), np.ones((n_frames, 2), bool))}
    wanted = [f for f in layout.needed_frames().tolist() if stop_at is None or f < stop_at]
    header = PreparedSource(info, layout, targets, {None: captions} if captions is not None else None)
    group = SourceGroup(info.path, [VideoItem("v", info.path, "train", None)])
    return group, header, (lambda g: (header, ((f, frame_image(f)) for f in wanted))), wanted


def _through_stages(group, prepare, batches: BatchSizes, roles=("video", "captioner", "image")):
    cfg = ExtractConfig(dataset="aff-wild2", image_batch=batches.image, clip_batch=batches.clip,
                        caption_batch=batches.caption, text_batch=batches.text)
    stages = {role: STAGES[role](cfg, build_fake_encoder, None, PROMPT) for role in roles}
    rows = list(decode_source(0, group, prepare, batches))
    for stage in stages.values():
        rows = rows_of(stage(as_batch(rows)))
    return rows, stages


def _results(rows) -> dict:
    from fgvu.extract.encoding import EncodeCounts

    out = {}
    for r in rows:
        if r["kind"] in ("header", "end"):
            continue
        meta = json.loads(r["meta"])
        counts = EncodeCounts(**meta.get("counts", {}))
        out[(r["kind"], r["t"], r["seq"])] = {"features": unpack(r["data"])["features"],
                                              "captions": meta.get("captions"), "counts": counts}
    return out


@pytest.mark.parametrize("n_frames,batches,video_frames", [
    (250, BatchSizes(image=8, clip=3, caption=2, text=3), (8, 16)),  # caption chunks of lcm(2, 3) = 6
    (1000, BatchSizes(), (16,)),
    (10, BatchSizes(image=4, clip=8, caption=64, text=256), (16,)),  # shorter than a window
])
def test_stages_make_the_local_engines_calls_and_features(n_frames, batches, video_frames):
    plan = SamplingPlan(video_frames=video_frames)
    group, header, prepare, wanted = _source(n_frames, plan)
    local_encoders = fake_encoders()
    local = SourceEncoder(local_encoders, header.layout, PROMPT, batches)
    for f in wanted:
        local.add(f, frame_image(f))
    expected = local.finish()

    rows, stages = _through_stages(group, prepare, batches)
    end = json.loads(rows[-1]["meta"]) if rows[-1]["kind"] == "end" else None
    assert end == {**end, "reason": None, "rows": len(rows) - 1}
    got = assemble(header.layout, _results(rows), dim=8)

    # the same calls, batch for batch, so real encoders give the same bits
    assert stages["image"].encoder.images.calls == local_encoders.image_text.images.calls
    assert stages["image"].encoder.texts.calls == local_encoders.image_text.texts.calls
    assert stages["captioner"].encoder.log.calls == local_encoders.captioner.log.calls
    assert stages["video"].encoder.clips.calls == local_encoders.video.clips.calls
    assert np.array_equal(got.image, expected.image) and np.array_equal(got.text, expected.text)
    assert got.captions == expected.captions
    assert got.video.keys() == expected.video.keys()
    for t in expected.video:
        assert np.array_equal(got.video[t], expected.video[t])
    assert got.counts == expected.counts


def test_given_captions_are_embedded_without_a_captioner():
    plan = SamplingPlan()
    layout = plan.layout(300)
    captions = [f"a frame numbered {f}" for f in layout.caption_frames.tolist()]
    group, header, prepare, _ = _source(300, plan, captions=captions)
    rows, stages = _through_stages(group, prepare, BatchSizes(text=5), roles=("video", "image"))
    got = assemble(header.layout, _results(rows), dim=8)
    assert got.captions == captions
    assert np.array_equal(got.text[:, 0] + 256 * got.text[:, 1], layout.caption_frames)  # fakes spell the frame


def test_cutter_holds_only_what_pending_chunks_need():
    layout = SamplingPlan().layout(3000)
    chunks = plan_chunks(layout, BatchSizes(image=16, clip=4, caption=4, text=4))
    cutter, held, emitted = ChunkCutter(layout, chunks), 0, []
    for f in layout.needed_frames().tolist():
        emitted += cutter.add(f, frame_image(f))
        held = max(held, len(cutter._held))
    cutter.check_complete()
    assert sorted(c.key for c, _ in emitted) == sorted(c.key for c in chunks)
    assert held <= 64, held  # about one window and a batch, not the 750 needed frames


def test_a_decoder_that_stops_early_fails_with_the_local_message():
    plan = SamplingPlan()
    group, header, prepare, wanted = _source(400, plan, stop_at=200)
    local = SourceEncoder(fake_encoders(), header.layout, PROMPT)
    for f in wanted:
        local.add(f, frame_image(f))
    with pytest.raises(IncompleteVideoError) as expected:
        local.finish()
    rows = list(decode_source(0, group, prepare, BatchSizes()))
    end = json.loads(rows[-1]["meta"])
    assert rows[-1]["kind"] == "end" and end["reason"] == str(expected.value)
    assert "missing" in end["reason"] and end["rows"] == len(rows) - 1
