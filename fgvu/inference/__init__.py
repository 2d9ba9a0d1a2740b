"""Using a trained run: predictions on new videos, from features, and online from a stream.

- `predictor`: `Predictor` (from_run, predict, predict_videos, predict_features);
- `encoders`: the run's encoders rebuilt from its cache's fingerprints;
- `video_features`: the run's extraction over unlabelled video files;
- `prediction`: `VideoPrediction`, the per-frame table and its CSV;
- `outputs`, `timeline`, `overlay`, `events`: what `fgvu predict` writes per video;
- `stream_source`, `stream_windows`, `stream_captions`, `stream`, `latency`: `fgvu stream`.
"""
