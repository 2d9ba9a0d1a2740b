"""cache.json: what a cache holds (dataset, task, sampling plan, encoders, dims, partition), and who may append.

`CacheSpec.stamp()` is the fingerprint of everything that decides a part's content (dataset,
task, sampling plan, encoders, dims, prompt, splits): every part records the stamp it was
written under, so a part copied from another cache is recognised and the differences named.
The partition (`parts`, K) is fixed when cache.json is created: a run with another K is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fgvu.cache.layout import SCHEMA_VERSION, SUPPORTED_SCHEMAS, CacheError
from fgvu.cache.location import cache_path, is_store
from fgvu.cache.storage import os_errors
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
    parts: int | None = None  # the partition K, fixed at creation; None: not declared (fgvu 0.1, tools)

    def __post_init__(self) -> None:
        if self.parts is not None and (isinstance(self.parts, bool) or not isinstance(self.parts, int)
                                       or self.parts < 1):
            raise CacheError(f"parts must be a positive integer, got {self.parts!r}")
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

    def identity(self) -> dict:
        """What decides a part's content: the spec without its schema version and partition."""
        d = self.to_dict()
        del d["schema_version"], d["parts"]
        return d

    def stamp(self) -> dict:
        """{"fingerprint": sha256 of the identity, "spec": the identity}, recorded in every part."""
        identity = self.identity()
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return {"fingerprint": digest, "spec": identity}

    def compatibility_problems(self, other: "CacheSpec", mine: str = "cache", theirs: str = "this run") -> list[str]:
        """Differences that forbid appending `other`'s videos to a cache made with `self`."""
        problems = []
        for key in ("dataset", "task", "dims", "caption_prompt", "splits"):
            if getattr(self, key) != getattr(other, key):
                problems.append(f"{key}: {mine} has {getattr(self, key)!r}, {theirs} has {getattr(other, key)!r}")
        if self.sampling != other.sampling:
            problems.append(f"sampling plan: {mine} has {self.sampling.to_dict()}, {theirs} has "
                            f"{other.sampling.to_dict()}")
        for role in sorted(set(self.encoders) | set(other.encoders)):
            a, b = self.encoders.get(role), other.encoders.get(role)
            if a != b:
                problems.append(f"encoder {role!r}: {mine} has {_short(a)}, {theirs} has {_short(b)}"
                                f"{_differences(a, b)}")
        return problems

    def stamp_problems(self, stamp: dict) -> list[str]:
        """How a part's stamp differs from this spec; empty when the part was written under it."""
        if not isinstance(stamp, dict) or not isinstance(stamp.get("spec"), dict):
            return ["its stamp is malformed"]
        if stamp.get("fingerprint") == self.stamp()["fingerprint"]:
            return []
        try:
            theirs = CacheSpec.from_dict({**stamp["spec"], "schema_version": self.schema_version})
        except (TypeError, KeyError, ValueError, AttributeError, CacheError) as e:
            return [f"its stamp is malformed ({e})"]
        return self.compatibility_problems(theirs, "cache.json", "the part") or ["its stamp's fingerprint differs"]


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
    cache = cache_path(cache)
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
    if version not in SUPPORTED_SCHEMAS:
        raise CacheError(
            f"cache {cache}: schema version {version} is not supported by this fgvu (expects {SCHEMA_VERSION}); "
            "re-extract the cache with this version"
        )
    try:
        return CacheSpec.from_dict(d)
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise CacheError(f"cache {cache}: cache.json is malformed ({e})") from None


def _partition_problem(cache: Path, existing: CacheSpec, spec: CacheSpec) -> str | None:
    if existing.parts is None or spec.parts is None or existing.parts == spec.parts:
        return None
    return (f"cache {cache} is split into {existing.parts} part(s) (cache.json); this run uses --parts {spec.parts}. "
            f"Re-run with --parts {existing.parts}, or use a new --out for another partition.")


def ensure_spec(cache: Path, spec: CacheSpec) -> CacheSpec:
    """Create cache.json, or check that an existing one agrees with `spec` (refusing if not).

    The partition is part of the agreement: a cache split into K parts refuses a run with
    another K (a spec without `parts` declares none and accepts any).
    """
    path = cache / SPEC_FILE
    if path.exists():  # the common case of a resumed cache: no temporary file to write
        return _agreeing(cache, spec)
    text = json.dumps(spec.to_dict(), indent=1)
    if is_store(cache):  # one conditional PUT: it fails if another writer got there first
        with os_errors(cache, "creating cache.json", len(text)):
            return spec if path.create(text.encode()) else _agreeing(cache, spec)
    # Write a complete temporary file, then link it into place: the link fails if another
    # writer got there first, and nobody ever sees a half-written cache.json.
    tmp = cache / f".cache.json.{os.getpid()}.tmp"
    with os_errors(cache, "creating cache.json", len(text), cleanup=lambda: tmp.unlink(missing_ok=True)):
        cache.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return _agreeing(cache, spec)
            return spec
        finally:
            tmp.unlink(missing_ok=True)


def _agreeing(cache: Path, spec: CacheSpec) -> CacheSpec:
    """The existing cache.json, if `spec` may append to it; else a CacheError listing the differences."""
    existing = read_spec(cache)
    problems = existing.compatibility_problems(spec)
    if problems:
        raise CacheError(
            f"cache {cache}: refusing to append with a different setup:\n  - " + "\n  - ".join(problems)
            + "\nUse a new --out directory for a different encoder set or sampling plan."
        )
    partition = _partition_problem(cache, existing, spec)
    if partition:
        raise CacheError(partition)
    return existing
