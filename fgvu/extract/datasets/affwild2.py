"""Aff-Wild2 (ABAW valence-arousal challenge).

Layout (folders may sit one or two levels deeper, e.g. under `annotations/`)::

    ROOT/
      batch1/<video>.mp4, batch2/<video>.avi, ...   videos, anywhere under ROOT
      VA_Estimation_Challenge/
        Train_Set/<name>.txt          "valence,arousal" then line k = frame k (1-based); -5 invalid
        Validation_Set/<name>.txt
        Test_Set/*.txt                optional: names of test videos, one per line (no labels)
      cropped_aligned/<name>/00001.jpg ...   optional: the organisers' face crops of each track

Each annotated name is one track. What its encoders see depends on `frames`:

- "auto" (the default): the track's own face crops when `cropped_aligned/<name>/` exists,
  else its video;
- "cropped_aligned": only face crops (tracks without a crop folder are skipped);
- "video": only videos.

`<video>_left` and `<video>_right` annotate two people in `<video>`. Read from the video,
each takes its half of every frame (left or right); the two items share one source, so the
video is decoded once for both. Read from crops, each has its own folder.

A crop folder's track has as many frames as its annotation has lines (a test track without
annotation: as many as its video), never as many as its highest crop number; a frame without
a crop (no face found) is a missing frame of the source, and its target is masked.
Names that no annotation or test list gives are not items. Annotated names without a source
are skipped with one warning listing them (`skipped` keeps them).
Videos (or frame folders) that no annotation or test list names are not items: one warning
lists them (`unannotated` keeps them). Both lists are in the extraction summary (`notices`). An
annotation file's header names its columns: `arousal,valence` is read as such. A test-list name
that is not a plain file name (`../x`, `a/b`) is skipped as well: names never reach into other
folders.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from fgvu.tasks import get_task

from .base import (
    VIDEO_SUFFIXES,
    DatasetAdapter,
    DatasetError,
    Targets,
    VideoItem,
    find_videos,
    listed,
    parse_va_rows,
    read_rows,
    read_text_lines,
    reconcile,
    register_adapter,
)

ANNOTATION_DIR = "VA_Estimation_Challenge"
FRAMES_DIR = "cropped_aligned"
FRAME_MODES = ("auto", "video", FRAMES_DIR)
PERSON_SUFFIXES = ("_left", "_right")
# Folders never searched for videos: they hold millions of face crops or only text.
SKIP_DIRS = (FRAMES_DIR, "cropped", ANNOTATION_DIR)


def find_dir(root: Path, name: str, depth: int = 3) -> Path | None:
    """The first folder called `name` at most `depth` levels under `root` (breadth first)."""
    level = [root]
    for _ in range(depth):
        nxt = []
        for folder in level:
            if (folder / name).is_dir():
                return folder / name
            try:
                nxt.extend(sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in SKIP_DIRS))
            except OSError:
                continue
        level = nxt
    return None


def split_of(folder_name: str) -> str | None:
    """'Train_Set' -> 'train', 'Validation_Set' -> 'val', 'Test_Set' -> 'test'."""
    low = folder_name.lower()
    for prefix, split in (("train", "train"), ("val", "val"), ("test", "test")):
        if low.startswith(prefix):
            return split
    return None


@register_adapter
class AffWild2Adapter(DatasetAdapter):
    """Aff-Wild2 valence-arousal: per-frame targets (valence, arousal) in [-1, 1]."""

    name = "aff-wild2"
    task = "va"
    default_prompt = (
        "Describe the facial expression of this person: how pleasant or unpleasant they look (valence) "
        "and how calm or excited they look (arousal)."
    )
    layout_help = """\
  data/aff-wild2/
    batch1/<video>.mp4 ...                          (videos anywhere under the root, .mp4/.avi)
    VA_Estimation_Challenge/Train_Set/<name>.txt    (header "valence,arousal", one line per frame, -5 invalid)
    VA_Estimation_Challenge/Validation_Set/<name>.txt
    VA_Estimation_Challenge/Test_Set/<list>.txt     (optional: test video names, one per line)
    cropped_aligned/<name>/00001.jpg ...            (optional: face crops, read when present)
  <video>_left / <video>_right annotations share the video <video>; without crops each sees its half."""

    def __init__(self, root, frames: str = "auto", test_list: str | os.PathLike | None = None):
        super().__init__(root)
        if frames not in FRAME_MODES:
            raise DatasetError(f"aff-wild2: frames must be one of {', '.join(FRAME_MODES)}, got {frames!r}")
        self.frames = frames
        self.test_list = Path(test_list) if test_list else None
        self.skipped: list[tuple[str, str]] = []  # (name, reason) of annotations without a source
        self._videos: dict[str, Path] = {}  # name -> its video, to count a crop folder's frames
        self._source_names: dict[str, Path] = {}  # every video (or frame folder) found, by name

    def items(self) -> list[VideoItem]:
        self.check_root()
        named = self._annotated_names()
        if not named:
            raise DatasetError(f"aff-wild2: no annotations or test lists under {self.root}. Expected layout:\n"
                               f"{self.layout_help}")
        crops, videos = self._crop_folders(), self._find_videos()
        items, self.skipped, self._videos = [], [], {}
        for name, (split, annotation) in sorted(named.items()):
            if not _plain(name):
                self.skipped.append((name, "not a plain video name"))
                continue
            video, half = videos(name)
            if video is not None:
                self._videos[name] = video
            folder = crops / name if crops is not None and (crops / name).is_dir() else None
            if folder is not None and annotation is None and video is None:
                self.skipped.append((name, f"{FRAMES_DIR}/{name}/ but neither an annotation nor a video "
                                           "to count its frames"))
            elif folder is not None:
                items.append(VideoItem(name=name, source=folder, split=split, annotation=annotation))
            elif self.frames == FRAMES_DIR:
                self.skipped.append((name, f"no {FRAMES_DIR}/{name}/"))
            elif video is None:
                self.skipped.append((name, "no video"))
            else:
                items.append(VideoItem(name=name, source=video, split=split, annotation=annotation, half=half))
        # a source is annotated when a track reads it, or when a track's crops are counted from it
        used = {item.source for item in items} | set(self._videos.values())
        found = {} if self.frames == FRAMES_DIR else dict(self._source_names)  # videos only count crops there
        if crops is not None:
            found.update({p.name: p for p in crops.iterdir() if p.is_dir()})
        self.unannotated = sorted(n for n, path in found.items() if path not in used)
        for notice in self.notices():
            warnings.warn(notice, stacklevel=2)
        return items

    def notices(self) -> list[str]:
        skipped = [f"aff-wild2: {len(self.skipped)} annotated names have no source and are skipped: "
                   + listed([f"{n} ({why})" for n, why in self.skipped])] if self.skipped else []
        return skipped + super().notices()

    def _annotated_names(self) -> dict[str, tuple[str, Path | None]]:
        """name -> (split, annotation file or None for test names)."""
        named: dict[str, tuple[str, Path | None]] = {}

        def add(name: str, split: str, annotation: Path | None) -> None:
            if name in named and named[name] != (split, annotation):
                raise DatasetError(f"aff-wild2: {name!r} is listed twice ({named[name][1] or named[name][0]} "
                                   f"and {annotation or split}); each video belongs to one split")
            named[name] = (split, annotation)

        ann_dir = find_dir(self.root, ANNOTATION_DIR)
        if ann_dir is not None:
            for folder in sorted(p for p in ann_dir.iterdir() if p.is_dir()):
                split = split_of(folder.name)
                if split is None:
                    continue
                for txt in sorted(folder.glob("*.txt")):
                    if split == "test":
                        for name in self._test_names(txt):
                            add(name, "test", None)
                    else:
                        add(txt.stem, split, txt)
        if self.test_list is not None:
            if not self.test_list.is_file():
                raise DatasetError(f"aff-wild2: test list not found: {self.test_list}")
            for name in self._test_names(self.test_list):
                add(name, "test", None)
        self._check_tracks_share_split(named)
        return named

    def _check_tracks_share_split(self, named: dict[str, tuple[str, Path | None]]) -> None:
        """Both tracks of one video (`<video>_left`, `<video>_right`) must be in one split, or the
        split would leak the video; conflicting annotation folders are an error naming both files."""
        task = get_task(self.task)
        first: dict[str, str] = {}
        for name in sorted(named):
            base = task.base_video(name)
            other = first.setdefault(base, name)
            if named[other][0] != named[name][0]:
                where = [named[n][1] or f"the {named[n][0]} list" for n in (other, name)]
                raise DatasetError(f"aff-wild2: {other} ({named[other][0]}) and {name} ({named[name][0]}) are tracks "
                                   f"of one video in different splits: {where[0]} and {where[1]}; both tracks of a "
                                   "video must share a split")

    @staticmethod
    def _test_names(path: Path) -> list[str]:
        """Names listed one per line (a video suffix is dropped); a file with a valence,arousal
        header is an annotation file and names only itself."""
        lines = [line.split(",")[0].strip() for line in read_text_lines(path) if line.strip()]
        if lines and lines[0].lower() in ("valence", "arousal"):
            return [path.stem]
        return [Path(n).stem if n.lower().endswith(VIDEO_SUFFIXES) else n for n in lines]

    def _crop_folders(self) -> Path | None:
        """The cropped_aligned folder the tracks read, or None when they read videos."""
        if self.frames == "video":
            return None
        folder = find_dir(self.root, FRAMES_DIR)
        if folder is None and self.frames == FRAMES_DIR:
            raise DatasetError(f"aff-wild2: --frames {FRAMES_DIR} but no {FRAMES_DIR}/ folder under {self.root}")
        return folder

    def _find_videos(self):
        """A function name -> (its video or None, the half of the frame it sees or None)."""
        videos: dict[str, Path] = {}
        for path in find_videos(self.root, skip_dirs=SKIP_DIRS, notes=self.link_loops):
            if path.stem in videos:
                raise DatasetError(f"aff-wild2: two videos named {path.stem!r}: {videos[path.stem]} and {path}")
            videos[path.stem] = path
        self._source_names = videos

        def video_for(name: str) -> tuple[Path | None, str | None]:
            if name in videos:
                return videos[name], None
            for suffix in PERSON_SUFFIXES:
                if name.endswith(suffix) and name[: -len(suffix)] in videos:
                    return videos[name[: -len(suffix)]], suffix[1:]
            return None, None

        return video_for

    def audio_source(self, item: VideoItem) -> Path:
        """A track read from face crops hears its video's soundtrack; any other track, its source's."""
        return self._videos.get(item.name, item.source) if Path(item.source).is_dir() else Path(item.source)

    def frame_count(self, item: VideoItem) -> int | None:
        """A crop folder's frames: its annotation's lines, else its video's frames. None for videos."""
        if not item.source.is_dir():
            return None
        if item.annotation is not None:
            return max(1, len(read_rows(item.annotation)[1]))
        if item.name not in self._videos:
            raise DatasetError(f"aff-wild2: {item.source} has no annotation or video to count its frames")
        from fgvu.extract.video_source import open_video

        return open_video(self._videos[item.name]).info.n_frames

    def load_targets(self, item: VideoItem, n_frames: int) -> Targets:
        """(valence, arousal) per frame: line k+1 of the annotation is frame k (0-based)."""
        if item.annotation is None:
            return self.unlabelled(n_frames)
        header, rows, first_line = read_rows(item.annotation)
        warns: list[str] = []
        if header is None:
            warns.append(f"{item.annotation}: no 'valence,arousal' header; the first line is read as frame 1")
        elif "valence" in header and "arousal" in header:
            if header != ["valence", "arousal"]:  # the header says where each column is
                columns = [header.index("valence"), header.index("arousal")]
                rows = [[row[c] for c in columns] if len(row) == len(header) else [] for row in rows]
        else:
            warns.append(f"{item.annotation}: header {','.join(header)!r} read as valence,arousal")
        values, mask = parse_va_rows(rows, first_line, item.annotation, warns)
        return reconcile(values, mask, n_frames, item.annotation, warns)


def _plain(name: str) -> bool:
    """A name that is one plain file name: no separators, not '.' or '..' (test lists are text)."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")
