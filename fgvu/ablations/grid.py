"""Ablation grids: named configurations, each a set of overrides of FitConfig / ModelConfig.

The default grid follows DESIGN.md. Its reference, the *full model*, is the paper's full model:
v,i,t with cross-attention (image queries), all four feature augmentations and the
autoencoding term (the abstract names both regularisers); every other configuration changes
one aspect of it. The audio rows (`a`, `i+a`, `v+i+t+a`) run only on a cache with audio;
elsewhere they are skipped with the reason, like any configuration whose streams or sampling
the cache lacks.

A TOML file can define another grid::

    reference = "full"        # the configuration every other one is tested against
    seeds = 3                 # default for --seeds (optional)
    extends = "default"       # optional: start from the default grid's configurations
    exclude = ["video-32"]    # optional: drop configurations (e.g. inherited ones)

    [base]                    # FitConfig overrides applied to every configuration
    epochs = 10
    augment = ["noise", "modality-dropout", "temporal-mask", "mixup"]
    recon_weight = 0.1
    [base.model]              # ModelConfig overrides applied to every configuration
    d_model = 64

    [configs.full]
    group = "reference"
    [configs.concat]
    group = "fusion"
    description = "pooled GRU states concatenated"
    model = { fusion = "concat" }

Keys of a configuration: `group`, `description`, `model` (a table of ModelConfig fields) and
any FitConfig field.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fgvu.cache import CacheSpec
from fgvu.errors import FgvuError
from fgvu.fusion.config import AUGMENTATIONS, FitConfig
from fgvu.modalities import MODALITIES, query_letter
from fgvu.settings import SettingsError, apply_overrides

REFERENCE = "full"
RECON_WEIGHT = 0.1  # weight of the autoencoding term in the full model


class GridError(FgvuError):
    """A grid definition that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Ablation:
    """One named configuration of the grid: overrides applied on top of the grid's base."""

    name: str
    group: str
    description: str = ""
    fit: Mapping = field(default_factory=dict)  # FitConfig field -> value (no "model")
    model: Mapping = field(default_factory=dict)  # ModelConfig field -> value


@dataclass(frozen=True)
class Grid:
    """Configurations plus the overrides every one of them starts from."""

    ablations: tuple[Ablation, ...]
    reference: str = REFERENCE
    base_fit: Mapping = field(default_factory=dict)
    base_model: Mapping = field(default_factory=dict)
    seeds: int | None = None  # the grid's own default number of seeds
    source: str = "default grid"

    def __post_init__(self) -> None:
        names = [a.name for a in self.ablations]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise GridError(f"{self.source}: duplicate configuration names {duplicates}")
        if not self.ablations:
            raise GridError(f"{self.source}: the grid has no configurations")
        if self.reference not in names:
            raise GridError(f"{self.source}: the reference configuration {self.reference!r} is not in the grid")
        for name in names:
            if not name or "/" in name or name.startswith(".") or any(c.isspace() for c in name):
                raise GridError(f"{self.source}: configuration name {name!r} cannot be a folder name")

    def names(self) -> list[str]:
        return [a.name for a in self.ablations]

    def build(self, base: FitConfig | None = None) -> dict[str, FitConfig]:
        """The FitConfig of every configuration: `base`, then the grid's base, then its own overrides."""
        base = base or FitConfig()
        try:
            start = _override(base, self.base_fit, self.base_model, f"{self.source} [base]")
            return {
                a.name: _override(start, a.fit, a.model, f"{self.source} [configs.{a.name}]") for a in self.ablations
            }
        except SettingsError as e:
            raise GridError(str(e)) from None


def _override(cfg: FitConfig, fit: Mapping, model: Mapping, where: str) -> FitConfig:
    if "model" in fit:
        raise GridError(f"{where}: put ModelConfig fields under `model`, not inside the FitConfig overrides")
    new_model = apply_overrides(cfg.model, dict(model), f"{where}.model") if model else cfg.model
    cfg = apply_overrides(cfg, dict(fit), where) if fit else cfg
    return dataclasses.replace(cfg, model=new_model)


def default_grid() -> Grid:
    """The paper's ablations (DESIGN.md): modalities, fusion, query, augmentation, recon, sampling."""
    ablations = [Ablation(REFERENCE, "reference", "the paper's full model: v+i+t, cross-attention with image "
                          f"queries, all augmentations, the autoencoding term (weight {RECON_WEIGHT})")]
    for subset in ("v", "i", "t", "v+i", "i+t", "v+t"):
        mods = tuple(subset.split("+"))
        ablations.append(Ablation(subset, "modalities", f"only {subset}",
                                  model={"modalities": mods, "query": MODALITIES[query_letter("image", mods)].name}))
    for subset, description in (("a", "only audio"), ("i+a", "image and audio"),
                                ("v+i+t+a", "the full model plus audio")):
        mods = tuple(subset.split("+"))
        ablations.append(Ablation(subset, "audio", description,
                                  model={"modalities": mods, "query": MODALITIES[query_letter("image", mods)].name}))
    ablations += [
        Ablation("concat", "fusion", "pooled GRU states concatenated", model={"fusion": "concat"}),
        Ablation("xattn-sym", "fusion", "every stream attends to the others", model={"fusion": "xattn-sym"}),
        Ablation("sequential", "fusion", "attention stages chained: image -> video, then the result -> text",
                 model={"stages": "sequential"}),
        Ablation("query-video", "query", "video stream as the attention query", model={"query": "video"}),
        Ablation("query-text", "query", "caption stream as the attention query", model={"query": "text"}),
        Ablation("no-aug", "augmentation", "no feature augmentation", fit={"augment": ()}),
    ]
    for aug in AUGMENTATIONS:
        ablations.append(Ablation(f"aug-{aug}", "augmentation", f"{aug} only", fit={"augment": (aug,)}))
    ablations += [
        Ablation("no-recon", "autoencoding", "without the autoencoding term", fit={"recon_weight": 0.0}),
        Ablation("image-8", "sampling", "8 image frames per window", fit={"image_frames": 8}),
        Ablation("captions-2", "sampling", "2 captions per window", fit={"captions": 2}),
        Ablation("captions-8", "sampling", "8 captions per window", fit={"captions": 8}),
        Ablation("video-8", "sampling", "8-frame VideoPrism clips", fit={"video_frames": 8}),
        Ablation("video-32", "sampling", "32-frame VideoPrism clips", fit={"video_frames": 32}),
    ]
    full = {"modalities": ("v", "i", "t"), "fusion": "xattn", "query": "image"}
    return Grid(tuple(ablations), base_fit={"augment": AUGMENTATIONS, "recon_weight": RECON_WEIGHT}, base_model=full)


_GRID_KEYS = {"reference", "seeds", "extends", "exclude", "base", "configs"}
_CONFIG_META = {"group", "description", "model"}


def load_grid(path: str | Path) -> Grid:
    """Read a TOML grid file (format in this module's docstring)."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"grid file {path}: no such file")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise GridError(f"grid file {path}: not valid TOML ({e})") from None
    unknown = sorted(set(data) - _GRID_KEYS)
    if unknown:
        raise GridError(f"grid file {path}: unknown top-level keys {unknown}; known: {sorted(_GRID_KEYS)}")
    inherited: list[Ablation] = []
    base_fit: dict = {}
    base_model: dict = {}
    extends = data.get("extends")
    if extends is not None:
        if extends != "default":
            raise GridError(f"grid file {path}: extends = {extends!r}; only \"default\" is known")
        default = default_grid()
        inherited, base_fit, base_model = list(default.ablations), dict(default.base_fit), dict(default.base_model)

    base = data.get("base", {})
    if not isinstance(base, dict):
        raise GridError(f"grid file {path}: [base] must be a table")
    base = dict(base)
    base_model.update(_table(base.pop("model", {}), path, "base.model"))
    base_fit.update(base)

    configs = data.get("configs", {})
    if not isinstance(configs, dict):
        raise GridError(f"grid file {path}: [configs] must be a table of tables")
    own = [_parse_config(name, body, path) for name, body in configs.items()]
    replaced = {a.name for a in own}
    ablations = [a for a in inherited if a.name not in replaced] + own

    exclude = data.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
        raise GridError(f"grid file {path}: exclude must be a list of configuration names")
    missing = sorted(set(exclude) - {a.name for a in ablations})
    if missing:
        raise GridError(f"grid file {path}: exclude names unknown configurations {missing}")
    ablations = [a for a in ablations if a.name not in exclude]

    reference = data.get("reference", REFERENCE)
    if reference not in {a.name for a in ablations}:
        raise GridError(f"grid file {path}: the reference configuration {reference!r} is not defined in [configs]")
    seeds = data.get("seeds")
    if seeds is not None and (not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1):
        raise GridError(f"grid file {path}: seeds must be a positive integer, got {seeds!r}")
    grid = Grid(tuple(ablations), reference, base_fit, base_model, seeds, source=f"grid file {path}")
    grid.build()  # type-check every override now, before any run starts
    return grid


def _table(value, path: Path, where: str) -> dict:
    if not isinstance(value, dict):
        raise GridError(f"grid file {path}: {where} must be a table")
    return dict(value)


def _parse_config(name: str, body, path: Path) -> Ablation:
    body = _table(body, path, f"configs.{name}")
    group = body.pop("group", "")
    description = body.pop("description", "")
    if not isinstance(group, str) or not isinstance(description, str):
        raise GridError(f"grid file {path}: configs.{name}: group and description must be strings")
    model = _table(body.pop("model", {}), path, f"configs.{name}.model")
    return Ablation(name, group or name, description, fit=body, model=model)


def unavailable_reason(cfg: FitConfig, spec: CacheSpec) -> str | None:
    """Why the cache cannot serve this configuration's streams or sampling, or None when it can.

    Every modality must be in the cache. Fewer grid steps than cached (image frames, captions)
    are taken as every k-th cached one, so the cached count must be a multiple; clips of T
    frames need their own cached array.
    """
    plan = spec.sampling
    for letter in cfg.model.modalities:
        m = MODALITIES.get(letter)
        if m is not None and m.name not in spec.dims:
            return f"the cache has no {m.name} features" + (f" ({m.how_to_add})" if m.how_to_add else "")
        if m is None or not m.length_option:
            continue
        want = getattr(cfg, m.length_option)
        what = m.length_option.replace("_", " ")
        if want <= 0:
            return f"{m.length_option} must be positive, got {want}"
        if m.storage == "clip":
            if want not in plan.video_frames:
                held = ", ".join(str(t) for t in plan.video_frames)
                return (f"needs {want}-frame {m.name} clips; the cache holds {held}-frame clips "
                        f"(extract with --video-frames including {want})")
            continue
        grid = m.on_grid
        have = grid.steps(plan)
        if have % want:
            every = plan.window // want if plan.window % want == 0 else None
            if every and grid.extract_option:
                hint = f" (extract with {grid.extract_option} {every})"
            else:
                hint = f" (extract with {grid.every}={every})" if every else ""
            return f"needs {want} {what} per window; the cache holds {have}{hint}"
    return None
