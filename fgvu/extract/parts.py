"""Deterministic split of a dataset's videos into K parts, one writer per part.

Items that share a source (Aff-Wild2 `<video>_left` / `<video>_right`) form one group, so the
video is decoded and encoded once. A group's part depends only on its name and K (a stable
hash), so adding videos to a dataset or using `--limit` never moves a video to another part,
and any launcher (a shell loop, SLURM array tasks, Ray) can run part k on its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class _Item(Protocol):
    name: str
    source: Path


@dataclass
class SourceGroup:
    """The items that read one video source, decoded once for all of them."""

    source: Path
    items: list

    @property
    def name(self) -> str:
        """The group's name: its smallest item name."""
        return min(item.name for item in self.items)


def group_by_source(items: Sequence[_Item]) -> list[SourceGroup]:
    """Group items sharing a source, in order of each group's first item."""
    groups: dict[Path, SourceGroup] = {}
    for item in items:
        key = Path(item.source)
        if key not in groups:
            groups[key] = SourceGroup(source=key, items=[])
        groups[key].items.append(item)
    return list(groups.values())


def part_of(name: str, parts: int) -> int:
    """The part (0..parts-1) that the group named `name` belongs to; stable across runs and machines."""
    digest = hashlib.sha1(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % parts


def split_parts(items: Sequence[_Item], parts: int) -> list[list[SourceGroup]]:
    """All K parts: each a list of source groups, sorted by group name. Every item is in exactly one."""
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    out: list[list[SourceGroup]] = [[] for _ in range(parts)]
    for group in group_by_source(items):
        out[part_of(group.name, parts)].append(group)
    for groups in out:
        groups.sort(key=lambda g: g.name)
    return out
