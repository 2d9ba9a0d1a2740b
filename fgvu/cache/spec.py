"""cache.json: what a cache holds (dataset, task, sampling plan, encoders, dims), and who may append to it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fgvu.cache.layout import SCHEMA_VERSION, CacheError
from fgvu.modalities import BY_NAME, MODALITIES
from fgvu.sampling import SamplingPlan
from fgvu.tasks import TASKS

SPEC_FILE = "cache.json"


@dataclass
class CacheSpec:
    """What cache.json records. Two writers may share a cache only if their specs agree."""

    dataset: str
    task: str
    sampling: SamplingPlan
    encoders: dict[str, dict]
    dims: dict[str, int]  # modality name -> feature width, for the modalities the cache stores
    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"])
    caption_prompt: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise CacheError(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        unknown = set(self.dims) - set(BY_NAME)
        if unknown:
            raise CacheError(f"unknown modalities in dims: {sorted(unknown)}; known: {sorted(BY_NAME)}")

    @property
    def target_names(self) -> tuple[str, ...]:
        return TASKS[self.task].targets

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality letters present in the cache, in registry order."""
        return tuple(m.letter for m in MODALITIES.values() if m.name in self.dims)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sampling"] = self.sampling.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CacheSpec":
        return cls(**{**d, "sampling": SamplingPlan.from_dict(d["sampling"])})

    def compatibility_problems(self, other: "CacheSpec") -> list[str]:
        """Differences that forbid appending `other`'s videos to a cache made with `self`."""
        problems = []
        for key in ("dataset", "task", "dims", "caption_prompt"):
            if getattr(self, key) != getattr(other, key):
                problems.append(f"{key}: cache has {getattr(self, key)!r}, this run has {getattr(other, key)!r}")
        if self.sampling != other.sampling:
            problems.append(f"sampling plan: cache has {self.sampling.to_dict()}, this run has {other.sampling.to_dict()}")
        for role in sorted(set(self.encoders) | set(other.encoders)):
            mine, theirs = self.encoders.get(role), other.encoders.get(role)
            if mine != theirs:
                problems.append(f"encoder {role!r}: cache has {_short(mine)}, this run has {_short(theirs)}"
                                f"{_differences(mine, theirs)}")
        return problems


def _short(fp: dict | None) -> str:
    if fp is None:
        return "none"
    return f"{fp.get('name')} ({fp.get('variant')}, {fp.get('checkpoint', '')[:16]})"


def _differences(mine: dict | None, theirs: dict | None, limit: int = 3) -> str:
    """'; differs in preprocessing.resize_mode ('shortest' vs 'longest')' for two fingerprints."""
    if not isinstance(mine, dict) or not isinstance(theirs, dict):
        return ""
    flat = [{}, {}]
    for out, fp in zip(flat, (mine, theirs)):
        for key, value in fp.items():
            if isinstance(value, dict):
                out.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                out[key] = value
    keys = sorted(k for k in set(flat[0]) | set(flat[1]) if flat[0].get(k) != flat[1].get(k))
    if not keys:
        return ""
    shown = ", ".join(f"{k} ({flat[0].get(k)!r} vs {flat[1].get(k)!r})" for k in keys[:limit])
    return f"; differs in {shown}{', ...' if len(keys) > limit else ''}"


def read_spec(cache: str | Path) -> CacheSpec:
    """Read and validate cache.json."""
    cache = Path(cache)
    path = cache / SPEC_FILE
    if not cache.exists():
        raise CacheError(f"cache {cache}: no such directory")
    if not path.exists():
        raise CacheError(f"cache {cache}: not an fgvu cache (cache.json is missing)")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CacheError(f"cache {cache}: cache.json is corrupt ({e})") from None
    if not isinstance(d, dict):
        raise CacheError(f"cache {cache}: cache.json is malformed (not a JSON object)")
    version = d.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CacheError(
            f"cache {cache}: schema version {version} is not supported by this fgvu (expects {SCHEMA_VERSION}); "
            "re-extract the cache with this version"
        )
    try:
        return CacheSpec.from_dict(d)
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise CacheError(f"cache {cache}: cache.json is malformed ({e})") from None


def ensure_spec(cache: Path, spec: CacheSpec) -> CacheSpec:
    """Create cache.json, or check that an existing one agrees with `spec` (refusing if not)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / SPEC_FILE
    # Write a complete temporary file, then link it into place: the link fails if another
    # writer got there first, and nobody ever sees a half-written cache.json.
    tmp = cache / f".cache.json.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(spec.to_dict(), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            existing = read_spec(cache)
            problems = existing.compatibility_problems(spec)
            if problems:
                raise CacheError(
                    f"cache {cache}: refusing to append with a different setup:\n  - " + "\n  - ".join(problems)
                    + "\nUse a new --out directory for a different encoder set or sampling plan."
                ) from None
            return existing
        return spec
    finally:
        tmp.unlink(missing_ok=True)
