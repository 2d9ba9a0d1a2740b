"""The encoders a run was trained with, rebuilt from the fingerprints its cache recorded.

A cache's `cache.json` keeps one fingerprint per encoder role (`name`, `variant`, `checkpoint`,
preprocessing). `encoder_name` maps a fingerprint back to a name of the encoder registry
(`fgvu/extract/encoders/registry.py`):

| role      | fingerprint name       | fingerprint variant           | registry name                     |
|-----------|------------------------|-------------------------------|-----------------------------------|
| video     | `videoprism`           | `videoprism-base|large|tiny`  | the variant (official weights from the Hugging Face cache) |
| image     | `clip`                 | `clip-tiny`                   | `clip-tiny`                       |
| image     | `clip`                 | `<model>:<pretrained tag>`    | `clip:<model>:<tag>`              |
| captioner | `captioner`            | `captioner-tiny`              | `captioner-tiny`                  |
| captioner | `captioner:minigpt4`   | the LLM variant               | the paper set's `captioner:minigpt4:models/minigpt4` |
| audio     | `audio`                | `audio-tiny`                  | `audio-tiny`                      |
| audio     | `audio`                | `wavlm-base-plus`, `wav2vec2-base`, `hubert-base` | `audio:<variant>` (hub weights) |

A cache without audio records no audio role, and a run that does not read audio gets no audio
encoder at all (`none`): its extraction skips the soundtrack.

Weights given as a local file or directory (`clip:<model>:/path`, `captioner:/dir`) are not
recorded in the fingerprint, only their sha256: the user names them (`--image-encoder`,
`--captioner`, `--video-encoder`, `--audio-encoder`; an audio model from a local directory is
recorded as `<model type>:<directory name>`). Whatever the name, the encoder is built exactly as
`fgvu extract` builds it (`fgvu.extract.pipeline.build_encoders`), so missing weights give
extract's error, and the built encoder's fingerprint must equal the recorded one for every
stream the run reads: other weights would make the predictions meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fgvu.extract.encoders.base import Captioner, EncoderError
from fgvu.extract.encoders.registry import ENCODER_SETS, VIDEO_ENCODERS
from fgvu.modalities import MODALITIES

# encoder role -> the ExtractConfig field (and command-line option) that names it
ROLE_OPTIONS = {"video": "video_encoder", "image": "image_encoder", "captioner": "captioner",
                "audio": "audio_encoder"}
# roles a cache may lack (then nothing is built for them)
OPTIONAL_ROLES = ("audio",)
# the fingerprint roles each modality's features depend on
MODALITY_ROLES = {"video": ("video",), "image": ("image",), "text": ("captioner", "text"), "audio": ("audio",)}


@dataclass(frozen=True)
class EncoderOverrides:
    """Registry names the user gives instead of the ones the fingerprints lead to (None: from the run)."""

    video_encoder: str | None = None
    image_encoder: str | None = None
    captioner: str | None = None
    audio_encoder: str | None = None

    def for_role(self, role: str) -> str | None:
        return getattr(self, ROLE_OPTIONS[role])


def _not_recorded(role: str, fingerprint: dict, example: str) -> EncoderError:
    option = "--" + ROLE_OPTIONS[role].replace("_", "-")
    return EncoderError(
        f"the run's {role} encoder is {fingerprint.get('name')} {fingerprint.get('variant')!r} with weights from a "
        f"local path, which the cache does not record (only their sha256 {str(fingerprint.get('checkpoint'))[:16]}...); "
        f"name them with {option}, e.g. {option} {example}")


def encoder_name(role: str, fingerprint: dict) -> str:
    """The registry name that builds the encoder `fingerprint` describes (see the module docstring)."""
    name, variant = fingerprint.get("name"), str(fingerprint.get("variant"))
    if role == "video" and name == "videoprism" and variant in VIDEO_ENCODERS:
        return variant
    if role == "image" and name == "clip":
        if variant == "clip-tiny":
            return "clip-tiny"
        model, _, tag = variant.partition(":")
        if model and tag and tag not in ("file", "random"):
            return f"clip:{model}:{tag}"
        raise _not_recorded(role, fingerprint, f"clip:{model or '<model>'}:/path/to/open_clip_weights.bin")
    if role == "captioner":
        if name == "captioner" and variant == "captioner-tiny":
            return "captioner-tiny"
        if name == "captioner:minigpt4":
            return ENCODER_SETS["paper"]["captioner"]
        if name == "captioner":
            raise _not_recorded(role, fingerprint, "captioner:/path/to/model-dir")
    if role == "audio" and name == "audio":
        from fgvu.extract.encoders.audio import HUB_MODELS

        if variant == "audio-tiny":
            return "audio-tiny"
        if variant in HUB_MODELS:
            return f"audio:{variant}"
        raise _not_recorded(role, fingerprint, "audio:/path/to/model-dir")
    raise EncoderError(f"the run's {role} encoder fingerprint ({name} {variant!r}) names no encoder this fgvu can "
                       "build; name one with --" + ROLE_OPTIONS.get(role, role).replace("_", "-"))


def encoder_names(encoders: dict[str, dict], overrides: EncoderOverrides = EncoderOverrides(),
                  roles=tuple(ROLE_OPTIONS)) -> dict[str, str]:
    """role -> registry name for `roles`: the user's override, else the name the fingerprint leads to.
    An optional role (audio) the cache does not record is left out."""
    names = {}
    for role in roles:
        if role in OPTIONAL_ROLES and role not in encoders and overrides.for_role(role) is None:
            continue
        if role not in encoders:
            raise EncoderError(f"the run's cache records no {role} encoder")
        names[role] = overrides.for_role(role) or encoder_name(role, encoders[role])
    return names


def roles_read(modalities) -> set[str]:
    """The fingerprint roles whose encoders produce the features of the given modality letters."""
    return {role for letter in modalities for role in MODALITY_ROLES[MODALITIES[letter].name]}


def check_fingerprints(recorded: dict[str, dict], built: dict[str, dict], roles) -> None:
    """EncoderError when a built encoder differs from the recorded one in a role the run reads."""
    problems = []
    for role in sorted(roles):
        mine, theirs = recorded.get(role), built.get(role)
        if mine == theirs:
            continue
        keys = sorted(k for k in set(mine or {}) | set(theirs or {}) if (mine or {}).get(k) != (theirs or {}).get(k))
        detail = "; ".join(f"{k}: run {_short((mine or {}).get(k))}, now {_short((theirs or {}).get(k))}"
                           for k in keys)
        problems.append(f"{role} ({detail})")
    if problems:
        raise EncoderError("the encoders built now differ from the ones the run was trained with, so its "
                           "predictions would mean nothing: " + "; ".join(problems)
                           + ". Pass the run's own weights with --video-encoder, --image-encoder, --captioner or "
                           "--audio-encoder")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class UnusedCaptioner(Captioner):
    """The run's captioner, built but never run, for a run that reads no text stream.

    Extraction fills every stream, but a run trained on video and image alone does not need the most
    expensive encoder: its captions are left empty (their text rows are never read). The real
    captioner is still built, because its input side decides the size frames are converted to
    before every encoder (`EncoderSet.input_side`); the fingerprint says the captions were skipped.
    """

    def __init__(self, captioner: Captioner):
        self.input_size = getattr(captioner, "input_size", None)
        self.fingerprint = {**captioner.fingerprint, "captions": "not computed: the run reads no text"}

    def caption(self, images: np.ndarray, prompt: str) -> list[str]:
        return [""] * len(images)


def build_run_encoders(spec, modalities, device: str = "auto", overrides: EncoderOverrides = EncoderOverrides(),
                       progress: bool = False):
    """The EncoderSet that extracts what a run trained on `spec`'s cache reads, built as `fgvu extract` builds it.

    Returns (encoders, names). Roles the run reads are checked against the recorded fingerprints.
    """
    from fgvu.extract.config import ExtractConfig
    from fgvu.extract.pipeline import build_encoders

    reads = roles_read(modalities)
    # the soundtrack is decoded and encoded only for a run that reads audio
    names = encoder_names(spec.encoders, overrides, [r for r in ROLE_OPTIONS if r not in OPTIONAL_ROLES or r in reads])
    options = {"audio_encoder": "none", **{ROLE_OPTIONS[role]: name for role, name in names.items()}}
    generation = (spec.encoders.get("captioner", {}).get("preprocessing") or {}).get("generation") or {}
    cfg = ExtractConfig(dataset="folder", encoders="tiny", device=device, progress=progress,
                        max_new_tokens=int(generation.get("max_new_tokens") or ExtractConfig.max_new_tokens),
                        **options)
    encoders = build_encoders(cfg)
    check_fingerprints(spec.encoders, encoders.fingerprints(), reads)
    if "captioner" not in reads:
        encoders.captioner = UnusedCaptioner(encoders.captioner)
    return encoders, names
