"""The stages of the Ray Data extraction (`ray_engine`): decode tasks and encoder actors.

Every row of the dataset has the same columns, so blocks of any stage mix freely:

    source  int    the source's position in the run's list of pending sources
    kind    str    header | image | caption | clip | end
    t, seq  int    a chunk's clip length and position (`chunks.Chunk.key`), seq offset by its view
    meta    str    JSON: small values (counts, captions, busy seconds, warnings, reasons)
    data    bytes  an .npz (read with allow_pickle=False): frames in, features out

`decode_source` (a CPU task per source) emits the source's header row, its chunk rows as soon
as each is complete (`chunks.ChunkCutter`) and an end row that counts the rows before it. Each
encoder stage is an actor class that loads its encoder once and encodes the rows of its kinds,
passing the others through; its output row replaces the frames with features and adds its busy
seconds. An encoder's user-facing error marks the row with it (meta "error": the video fails
with that message, as locally); any other exception is left to Ray to retry.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np

from fgvu.errors import FgvuError
from fgvu.extract.chunks import ChunkCutter, plan_chunks
from fgvu.extract.encoders.base import EncoderError
from fgvu.extract.encoding import BatchSizes
from fgvu.extract.sources import failure_reason, views
from fgvu.extract.video_source import crop_half

COLUMNS = ("source", "kind", "t", "seq", "meta", "data")
VIEW_SEQ = 1 << 32  # chunk seq of view v (the frame's part an item sees) starts at v * VIEW_SEQ


def pack(**arrays: np.ndarray) -> bytes:
    """Arrays -> .npz bytes (no pickles)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def unpack(data: bytes) -> dict[str, np.ndarray]:
    """.npz bytes -> arrays; object arrays are refused."""
    if not data:
        return {}
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def row(source: int, kind: str, meta: dict | None = None, data: bytes = b"", t: int = 0, seq: int = 0) -> dict:
    """One row of the fixed columns."""
    return {"source": int(source), "kind": kind, "t": int(t), "seq": int(seq), "meta": json.dumps(meta or {}),
            "data": data}


def as_batch(rows: list[dict]) -> dict[str, np.ndarray]:
    """Rows -> one numpy batch of the fixed columns."""
    out = {}
    for name in COLUMNS:
        values = [r[name] for r in rows]
        out[name] = np.array(values, dtype=object if name in ("meta", "data", "kind") else np.int64)
    return out


def rows_of(batch: dict[str, np.ndarray]) -> list[dict]:
    """One numpy batch -> rows."""
    n = len(batch["source"])
    return [{name: (batch[name][i].item() if name in ("source", "t", "seq") else batch[name][i]) for name in COLUMNS}
            for i in range(n)]


# ---- decoding: one CPU task per source --------------------------------------------------------------


def decode_sources(batch: dict[str, np.ndarray], groups: list, prepare, batches: BatchSizes):
    """map_batches UDF (a generator): every row of each source in the batch, one small batch per row."""
    for source in batch["source"].tolist():
        rows, busy = decode_source(source, groups[source], prepare, batches), 0.0
        while True:
            mark = time.perf_counter()  # busy: time spent producing rows, not waiting under backpressure
            out = next(rows, None)
            busy += time.perf_counter() - mark
            if out is None:
                break
            if out["kind"] == "end":
                out["meta"] = json.dumps({**json.loads(out["meta"]), "busy": busy})
            yield as_batch([out])


def decode_source(source: int, group, prepare, batches: BatchSizes):
    """The rows of one source: header, chunks as they complete, then end (with a reason on failure)."""
    emitted, reason, frames = 0, None, None
    try:
        header, frames = prepare(group)
        targets, arrays = [], {}
        for i, item in enumerate(group.items):
            value = header.targets[item.name]
            if isinstance(value, Exception):
                targets.append({"error": failure_reason(value)})
            else:
                targets.append({"warnings": list(value.warnings)})
                arrays[f"values_{i}"], arrays[f"mask_{i}"] = value.values, value.mask
        info = header.info
        halves = list(views(header.ok(group.items)))  # the views of the frame its items see
        captions = ({view_key(h): header.captions[h] for h in halves} if header.captions is not None else None)
        meta = {"n_frames": int(info.n_frames), "fps": float(info.fps), "width": int(info.width),
                "height": int(info.height), "targets": targets, "captions": captions, "missing": header.missing,
                "views": [view_key(h) for h in halves]}
        yield row(source, "header", meta, pack(**arrays))
        emitted += 1
        if frames is not None:
            # one cutter per view; a view's chunks are numbered from view_index * VIEW_SEQ
            cutters = []
            for v, half in enumerate(halves):
                given = captions[view_key(half)] if captions is not None else None
                chunks = plan_chunks(header.layout, batches, caption_frames=given is None)
                cutters.append((v, half, ChunkCutter(header.layout, chunks), given))
            for v, _, cutter, given in cutters:
                for chunk, images in cutter.ready():
                    yield _chunk_row(source, chunk, images, given, v)
                    emitted += 1
            for index, image in frames:
                for v, half, cutter, given in cutters:
                    for chunk, images in cutter.add(int(index), crop_half(image, half)):
                        yield _chunk_row(source, chunk, images, given, v)
                        emitted += 1
            for _, _, cutter, _ in cutters:
                cutter.check_complete()
    except Exception as error:  # a bad video fails with its reason and the run goes on, as locally
        reason = failure_reason(error)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    yield row(source, "end", {"rows": emitted, "reason": reason})


def view_key(half: str | None) -> str:
    """A view as a JSON key: "whole", "left" or "right"."""
    return half or "whole"


def _chunk_row(source: int, chunk, images, captions: list[str] | None, view: int = 0) -> dict:
    meta, arrays = {}, {}
    if images is not None:
        arrays["frames"] = images
    if chunk.index is not None:
        arrays["index"] = chunk.index
    if chunk.kind == "caption" and captions is not None:  # reused captions: only the texts travel
        meta["captions"] = captions[chunk.start:chunk.start + chunk.n]
    return row(source, chunk.kind, meta, pack(**arrays), t=chunk.t, seq=view * VIEW_SEQ + chunk.seq)


# ---- encoders: one actor pool per role ----------------------------------------------------------------


class EncoderStage:
    """A map_batches callable class: builds its role's encoder once per actor, then encodes rows."""

    role = ""  # video | captioner | image, the `build(role, cfg)` argument
    kinds: tuple[str, ...] = ()

    def __init__(self, cfg, build, fingerprint: dict | None, prompt: str):
        self.cfg, self.prompt = cfg, prompt
        self.batches = BatchSizes(cfg.image_batch, cfg.clip_batch, cfg.caption_batch, cfg.text_batch)
        self.encoder = build(self.role, cfg)
        if fingerprint is not None and dict(self.encoder.fingerprint) != fingerprint:
            import socket

            raise EncoderError(f"the {self.role} encoder on {socket.gethostname()} has other weights or "
                               f"preprocessing than the one the run was planned with: {self.encoder.fingerprint} "
                               f"vs {fingerprint}; give every node the same files")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for r in rows_of(batch):
            if r["kind"] in self.kinds:
                r = self._encode_row(r)
            out.append(r)
        return as_batch(out)

    def _encode_row(self, r: dict) -> dict:
        meta = json.loads(r["meta"])
        if "error" in meta:  # an earlier stage failed this chunk
            return r
        start = time.perf_counter()
        try:
            meta, arrays = self.encode(r["kind"], meta, unpack(r["data"]))
        except FgvuError as error:  # the encoder refused this source: it fails with this message
            return {**r, "meta": json.dumps({"error": failure_reason(error)}), "data": b""}
        busy = meta.setdefault("busy", {})
        busy[self.role] = busy.get(self.role, 0.0) + time.perf_counter() - start
        return {**r, "meta": json.dumps(meta), "data": pack(**arrays)}

    def encode(self, kind: str, meta: dict, arrays: dict) -> tuple[dict, dict]:
        """(meta, arrays) of one row of `kind` -> the row's new (meta, arrays)."""
        raise NotImplementedError


class VideoStage(EncoderStage):
    """VideoPrism on clip rows: one call of `clip_batch` clips, the last clip repeated as padding."""

    role, kinds = "video", ("clip",)

    def encode(self, kind, meta, arrays):
        clips = arrays.pop("frames")[arrays.pop("index")]  # [n, T, H, W, 3]
        n = len(clips)
        if n < self.batches.clip:  # one batch shape: a JIT-compiled encoder compiles once, as locally
            clips = np.concatenate([clips, np.repeat(clips[-1:], self.batches.clip - n, axis=0)])
        arrays["features"] = np.asarray(self.encoder.encode_clips(clips)[:n], np.float32)
        meta["counts"] = {"clips": n, "clip_calls": 1}
        return meta, arrays


class CaptionStage(EncoderStage):
    """The captioner on caption rows that carry frames, in `caption_batch` calls."""

    role, kinds = "captioner", ("caption",)

    def encode(self, kind, meta, arrays):
        if "frames" not in arrays:  # reused captions: nothing to caption
            return meta, arrays
        frames, captions, calls = arrays.pop("frames"), [], 0
        for i in range(0, len(frames), self.batches.caption):
            batch = frames[i:i + self.batches.caption]
            texts = list(self.encoder.caption(batch, self.prompt))
            if len(texts) != len(batch):
                raise EncoderError(f"captioner returned {len(texts)} captions for {len(batch)} images")
            captions += texts
            calls += 1
        meta["captions"] = captions
        meta["counts"] = {"captioned_frames": len(frames), "caption_calls": calls}
        return meta, arrays


class ImageStage(EncoderStage):
    """CLIP: image rows through the image tower, caption rows' texts through the text tower."""

    role, kinds = "image", ("image", "caption")

    def encode(self, kind, meta, arrays):
        counts = meta.setdefault("counts", {})
        if kind == "image":
            frames = arrays.pop("frames")
            arrays["features"] = np.asarray(self.encoder.encode_images(frames), np.float32)
            counts.update(image_frames=len(frames), image_calls=1)
            return meta, arrays
        texts, out = meta["captions"], []
        for i in range(0, len(texts), self.batches.text):
            out.append(np.asarray(self.encoder.encode_texts(texts[i:i + self.batches.text]), np.float32))
        arrays["features"] = np.concatenate(out) if out else np.zeros((0, self.encoder.dim), np.float32)
        counts["texts"] = len(texts)
        return meta, arrays


STAGES = {"video": VideoStage, "captioner": CaptionStage, "image": ImageStage}


def describe_encoders(roles: list[str], cfg, build) -> dict[str, dict]:
    """The probe task: build each encoder in turn and return what the driver plans with
    (fingerprint, dim, input size), by role."""
    out = {}
    for role in roles:
        encoder = build(role, cfg)
        out[role] = {"fingerprint": dict(encoder.fingerprint), "dim": int(getattr(encoder, "dim", 0) or 0),
                     "input_size": getattr(encoder, "input_size", None)}
        del encoder  # one model in memory at a time
    return out
