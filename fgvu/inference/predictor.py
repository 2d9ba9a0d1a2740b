"""`Predictor`: a trained run applied to new videos or to features already computed.

    from fgvu import Predictor
    p = Predictor.from_run("runs/aff-wild2-vit-xattn-s0", device="auto")
    pred = p.predict("clip.mp4")          # a VideoPrediction: per-frame table and per-step outputs
    pred.column("valence"), pred.to_csv("clip.csv")

`predict` runs the run's own extraction (encoders, sampling plan and prompt from the cache the
run was trained on) into a temporary cache and predicts from it with `predict_features`, so its
result is frame for frame that of `fgvu extract` -> `fgvu predict --cache`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgvu.cache import CacheError, CacheView, open_cache, read_spec
from fgvu.cache.location import cache_path
from fgvu.errors import FgvuError
from fgvu.inference.encoders import EncoderOverrides
from fgvu.inference.prediction import StepOutputs, VideoPrediction
from fgvu.sampling import step_frames
from fgvu.tasks import get_task


class PredictorError(FgvuError):
    """A run that cannot predict: its cache spec is gone, or it does not fit the features given."""


class VideoFailedError(FgvuError):
    """A video that could not be decoded or encoded; the message gives the reason."""


@dataclass
class PredictResult:
    """Predictions of several videos, and the (name, reason) of each video that failed."""

    predictions: list[VideoPrediction] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    cache: Path | None = None  # the kept feature cache, when one was asked for


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"; anything else unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Predictor:
    """A run's best checkpoint with the recipe of its features (see the module docstring)."""

    def __init__(self, run: str | Path, checkpoint, spec, device: str = "cpu",
                 overrides: EncoderOverrides = EncoderOverrides()):
        self.run = Path(run)
        self.checkpoint = checkpoint
        self.spec = spec
        self.device = device
        self.overrides = overrides
        self._encoders = None

    @classmethod
    def from_run(cls, run: str | Path, device: str = "auto", *, cache_spec: str | Path | None = None,
                 video_encoder: str | None = None, image_encoder: str | None = None,
                 captioner: str | None = None, audio_encoder: str | None = None, encoders=None) -> "Predictor":
        """Load a finished `fgvu fit` run. Its cache's cache.json (or `cache_spec`: a cache folder or a
        cache.json) says which encoders, sampling plan and prompt made its features; the encoder
        options replace a recorded encoder by a registry name (local weights). Encoders are only
        built when raw videos are first predicted, unless `encoders` (an `EncoderSet` of one's own,
        whose fingerprints must be the recorded ones for every stream the run reads) is given."""
        from fgvu.fusion.checkpoint import load_checkpoint
        from fgvu.inference.encoders import check_fingerprints, roles_read

        device = resolve_device(device)
        ckpt = load_checkpoint(run, device=device)
        spec = _run_spec(Path(run), ckpt.meta, cache_spec)
        if spec.task != ckpt.task:
            raise PredictorError(f"cache spec {spec.dataset} is for the {spec.task} task, run {run} predicts {ckpt.task}")
        predictor = cls(run, ckpt, spec, device, EncoderOverrides(video_encoder, image_encoder, captioner, audio_encoder))
        if encoders is not None:
            check_fingerprints(spec.encoders, encoders.fingerprints(), roles_read(predictor.modalities))
            predictor._encoders = encoders
        return predictor

    # ---- what the run is ---------------------------------------------------------------------

    @property
    def task(self) -> str:
        return self.checkpoint.task

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.checkpoint.cfg.model.modalities)

    def encoders(self, progress: bool = False):
        """The run's encoders (an `EncoderSet`), built on first use as `fgvu extract` builds them."""
        if self._encoders is None:
            from fgvu.inference.encoders import build_run_encoders

            self._encoders, _ = build_run_encoders(self.spec, self.modalities, self.device, self.overrides, progress)
        return self._encoders

    # ---- predicting ------------------------------------------------------------------------------

    def predict(self, video: str | Path, progress: bool = False) -> VideoPrediction:
        """Per-frame predictions of one video file; VideoFailedError with the reason when it cannot be read."""
        result = self.predict_videos([video], progress=progress)
        if result.failures:
            name, reason = result.failures[0]
            raise VideoFailedError(f"{video}: {reason}")
        return result.predictions[0]

    def predict_videos(self, videos=(), folder: str | Path | None = None, keep_cache: str | Path | None = None,
                       progress: bool = False) -> PredictResult:
        """Predict video files and/or every video under `folder`. A video that fails is listed in
        `failures` with its reason and the others go on. `keep_cache` keeps their features there."""
        from fgvu.inference.video_features import extract_videos, name_videos

        named = name_videos(videos, folder)
        encoders = self.encoders(progress)
        with tempfile.TemporaryDirectory(prefix="fgvu-predict-") as tmp:
            out = Path(keep_cache) if keep_cache is not None else Path(tmp) / "cache"
            extracted = extract_videos(named, self.spec, encoders, out, device=self.device, progress=progress)
            predictions = []
            if extracted.names:
                by_name = {p.name: p for p in self.predict_features(out, extracted.names)}
                predictions = [by_name[n] for n in extracted.names]
        for p in predictions:
            p.source = named[p.name]
        return PredictResult(predictions, extracted.failures, Path(keep_cache) if keep_cache is not None else None)

    def predict_features(self, features: CacheView | str | Path, videos=None) -> list[VideoPrediction]:
        """Predictions from features already computed: a cache folder or a `CacheView` (`fgvu.load_cache`),
        for all its videos or the named ones, in cache order."""
        from fgvu.fusion.evaluate import feature_data, frame_level, predict_windows, step_values
        from fgvu.fusion.splits import rows_of_names

        view = features if isinstance(features, CacheView) else self._open(features)
        data = feature_data(self.checkpoint, view, self.run, device=self.device)
        rows = np.arange(len(view.videos)) if videos is None else rows_of_names(view, list(videos))
        windows = data.windows_of(rows)
        norm = self.checkpoint.norm
        values = step_values(self.task, predict_windows(self.checkpoint.model, data, windows, norm))
        per_video = frame_level(view, windows, values)
        task = get_task(self.task)
        every = view.spec.sampling.window // values.shape[1]
        out = []
        for v in rows.tolist():
            mine = view.window_video[windows] == v
            starts = view.window_start[windows[mine]]
            steps = StepOutputs(starts, step_frames(starts, values.shape[1], every), values[mine],
                                view.valid[windows[mine]][:, ::every])
            size = (int(view.videos.width[v]), int(view.videos.height[v]))
            out.append(VideoPrediction(str(view.videos.name[v]), self.task, float(view.videos.fps[v]),
                                       task.prediction_rows(per_video[v]), steps, size=size))
        return out

    def _open(self, cache: str | Path) -> CacheView:
        cfg = self.checkpoint.cfg
        return open_cache(cache, modalities=cfg.model.modalities, video_frames=(cfg.video_frames,))


def _run_spec(run: Path, meta: dict, cache_spec: str | Path | None):
    """The CacheSpec of the cache the run was trained on (or of `cache_spec`)."""
    path = cache_path(cache_spec if cache_spec is not None else meta["cache"])
    folder = cache_path(str(path)[:-len("/cache.json")]) if path.name == "cache.json" else path
    try:
        return read_spec(folder)
    except CacheError as e:
        hint = "" if cache_spec is not None else (
            f"; run {run} was trained on it. Pass its cache.json (or a cache made the same way) with --cache-spec")
        raise PredictorError(f"{e}{hint}") from None
