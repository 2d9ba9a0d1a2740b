"""fgvu: fine-grained video understanding with frozen multimodal encoders and light fusion heads.

    from fgvu import Predictor, load_cache
    p = Predictor.from_run("runs/aff-wild2-vit-xattn-s0")   # a trained `fgvu fit` run
    frames = p.predict("clip.mp4")                          # per-frame predictions (and per-step outputs)
    view = load_cache("caches/aff-wild2")                   # the in-memory view of a feature cache

Both are imported on first use, so `import fgvu` stays cheap (no torch, no zarr).
"""

__version__ = "0.2.0"
__all__ = ["Predictor", "__version__", "load_cache"]


def __getattr__(name: str):
    if name == "Predictor":
        from fgvu.inference.predictor import Predictor

        return Predictor
    if name == "load_cache":
        from fgvu.cache import open_cache

        return open_cache
    raise AttributeError(f"module 'fgvu' has no attribute {name!r}")
