"""DVD violence detection: per-frame binary labels.

Layout::

    ROOT/
      Training/videos/<id>.mp4      Training/annotations/<id>.csv
      Validation/videos/<id>.mp4    Validation/annotations/<id>.csv
      Testing/videos/<id>.mp4       Testing/annotations/<id>.csv

Annotations may also sit in one `ROOT/annotations/<id>.csv` folder for all splits. Each CSV
has a per-frame `Label` column (0/1; also `label`, `violence`, any case) and optionally a
frame-number column. A train/val video without an annotation keeps the expected path, so
reading its targets raises DatasetError naming the missing file; a test video without one is
unlabelled.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .base import (
    DatasetAdapter,
    DatasetError,
    Targets,
    VideoItem,
    find_videos,
    read_label_table,
    reconcile,
    register_adapter,
)

SPLIT_FOLDERS = {"training": "train", "train": "train", "validation": "val", "val": "val",
                 "testing": "test", "test": "test"}
ANNOTATION_SUFFIXES = (".csv", ".txt")


@register_adapter
class DVDAdapter(DatasetAdapter):
    """DVD: binary per-frame violence labels, official Training/Validation/Testing splits."""

    name = "dvd"
    task = "violence"
    default_prompt = "Describe what the people in this scene are doing, and say whether anyone is being violent."
    layout_help = """\
  data/dvd/
    Training/videos/<id>.mp4     Training/annotations/<id>.csv    (per-frame `Label` column, 0/1)
    Validation/videos/<id>.mp4   Validation/annotations/<id>.csv
    Testing/videos/<id>.mp4      Testing/annotations/<id>.csv
  (or one data/dvd/annotations/<id>.csv folder for every split)"""

    def items(self) -> list[VideoItem]:
        self.check_root()
        split_dirs = sorted((p, SPLIT_FOLDERS[p.name.lower()]) for p in self.root.iterdir()
                            if p.is_dir() and p.name.lower() in SPLIT_FOLDERS)
        if not split_dirs:
            raise DatasetError(f"dvd: no Training/Validation/Testing folders in {self.root}. Expected layout:\n"
                               f"{self.layout_help}")
        items: dict[str, VideoItem] = {}
        for folder, split in split_dirs:
            video_dir = folder / "videos" if (folder / "videos").is_dir() else folder
            for video in find_videos(video_dir, skip_dirs=("annotations",), notes=self.link_loops):
                name = video.stem
                if name in items:
                    raise DatasetError(f"dvd: two videos named {name!r}: {items[name].source} and {video}")
                items[name] = VideoItem(name, video, split, self._annotation(folder, split, name))
        for notice in self.notices():
            warnings.warn(notice, stacklevel=2)
        return [items[name] for name in sorted(items)]

    def _annotation(self, split_dir: Path, split: str, name: str) -> Path | None:
        """The first existing annotation file; else the expected path (None for test videos)."""
        candidates = [d / "annotations" / (name + s) for d in (split_dir, self.root) for s in ANNOTATION_SUFFIXES]
        found = next((c for c in candidates if c.is_file()), None)
        if found is not None:
            return found
        return None if split == "test" else candidates[0]

    def load_targets(self, item: VideoItem, n_frames: int) -> Targets:
        """Violence (0/1) per frame, one column."""
        if item.annotation is None:
            return self.unlabelled(n_frames)
        warns: list[str] = []
        values, mask = read_label_table(item.annotation, warns)
        return reconcile(values, mask, n_frames, item.annotation, warns)
