"""The benchmarks' files: submission writers and the readers `fgvu score` needs.

Aff-Wild2 (ABAW valence-arousal):
    `image_location,valence,arousal`, one row per frame, `image_location` = `<video>/NNNNN.jpg`,
    1-based as the organisers' `cropped_aligned` frames are named (line k of an annotation
    file is frame k). The challenge takes one `predictions.txt` with exactly the rows of the
    organisers' sample file, in its order (`write_abaw_file`); without a sample fgvu writes one
    `<video>.txt` per video (`write_abaw_video`).
DVD (violence):
    `Frame_Number,Predicted_Label,Violence_Probability`, one `<video>.csv` per video. With the
    dataset's own per-video CSVs as a template (`write_dvd_from_template`) the rows and frame
    numbers are exactly the template's; without one, frames are numbered from 0 (the decoder's
    frame index). See docs/ARCHITECTURE.md ("Submission files") for where that comes from.

Rows the sample or template asks for but fgvu has no prediction for (a frame past the end of
the decoded video) are filled from the nearest predicted frame and counted, never dropped.
Pure Python and numpy: scoring a submission needs neither a cache nor torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgvu.errors import FgvuError
from fgvu.safe_names import file_in

ABAW_HEADER = ("image_location", "valence", "arousal")
ABAW_FILE = "predictions.txt"
DVD_HEADER = ("Frame_Number", "Predicted_Label", "Violence_Probability")
# how many offending names an error lists before "..."
LISTED = 5


class SubmissionError(FgvuError):
    """A sample, template, prediction or annotation file that cannot be used; names the file and line."""


@dataclass
class VideoFrames:
    """Per-frame values of one video at 0-based frame indices (sorted, unique)."""

    frames: np.ndarray  # [n] int
    values: np.ndarray  # [n, K]
    prob: np.ndarray | None = None  # [n] P(violent), when the file has it


@dataclass
class WrittenSubmission:
    """What a sample- or template-driven writer wrote, and how many rows it had to fill."""

    files: list[Path]
    rows: int
    filled: int = 0  # rows filled from the nearest predicted frame
    filled_by_video: dict[str, int] = field(default_factory=dict)
    unused_videos: list[str] = field(default_factory=list)  # predicted, but not asked for

    def summary(self) -> str:
        """One line for the command line."""
        line = f"{self.rows} rows in {len(self.files)} file(s)"
        if self.filled:
            worst = sorted(self.filled_by_video.items(), key=lambda kv: -kv[1])[:LISTED]
            line += (f"; {self.filled} rows had no predicted frame and were filled from the nearest one "
                     f"({', '.join(f'{v}: {n}' for v, n in worst)})")
        if self.unused_videos:
            line += f"; {len(self.unused_videos)} predicted videos are not in the sample and were not written"
        return line


def _listed(names) -> str:
    names = sorted(names)
    return ", ".join(names[:LISTED]) + (f", ... ({len(names)} in all)" if len(names) > LISTED else "")


def nearest(available: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each wanted frame the position in sorted `available` of the nearest frame, and
    whether it was not there itself (a filled row). Ties go to the earlier frame."""
    available, wanted = np.asarray(available, np.int64), np.asarray(wanted, np.int64)
    right = np.clip(np.searchsorted(available, wanted), 0, len(available) - 1)
    left = np.clip(right - 1, 0, len(available) - 1)
    pick = np.where(np.abs(available[left] - wanted) <= np.abs(available[right] - wanted), left, right)
    return pick, available[pick] != wanted


def _lines(path: Path) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SubmissionError(f"{path}: not a readable text file ({e})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _files(path: Path, suffix: str, what: str) -> list[Path]:
    """`path` itself, or the `*suffix` files of the folder `path`; none is an error."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise SubmissionError(f"{path}: no such file or folder ({what})")
    found = sorted(p for p in path.glob(f"*{suffix}") if p.is_file())
    if not found:
        raise SubmissionError(f"{path}: no {suffix} files ({what})")
    return found


# ---- Aff-Wild2 --------------------------------------------------------------------------------


def abaw_location(video: str, frame: int) -> str:
    """`<video>/NNNNN.jpg` of 0-based frame `frame`."""
    return f"{video}/{frame + 1:05d}.jpg"


def parse_location(text: str, path: Path, line: int) -> tuple[str, int]:
    """`<video>/NNNNN.jpg` -> (video, 0-based frame); anything else is an error naming the line."""
    video, _, image = text.strip().rpartition("/")
    stem = image.rsplit(".", 1)[0]
    if not video or not stem.isdigit() or int(stem) < 1:
        raise SubmissionError(f"{path}: line {line}: {text!r} is not <video>/<frame number>.jpg (1-based)")
    return video, int(stem) - 1


def _abaw_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every data row; the `image_location,...` header is required."""
    lines = _lines(path)
    if not lines or lines[0].split(",")[0].strip().lower() != ABAW_HEADER[0]:
        raise SubmissionError(f"{path}: the first line must be the header {','.join(ABAW_HEADER)}")
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        cells = [c.strip() for c in line.split(",")]
        if not cells[0]:
            raise SubmissionError(f"{path}: line {i} has no image_location")
        rows.append((i, cells))
    return rows


def write_abaw_video(out: Path, video: str, values: np.ndarray) -> Path:
    """OUT/<video>.txt with every frame of one video (no sample file)."""
    path = file_in(out, video, ".txt")  # names such as ../x stay inside OUT
    lines = [",".join(ABAW_HEADER)]
    lines += [f"{abaw_location(video, f)},{p[0]:.6f},{p[1]:.6f}" for f, p in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_abaw_file(sample: Path, out: Path, predictions: Mapping[str, np.ndarray]) -> WrittenSubmission:
    """OUT/predictions.txt: the sample file's rows, in its order, with fgvu's valence and arousal.

    `predictions` maps each video to its frame-level values [n_frames, 2] (frame f in row f).
    A video of the sample with no predictions at all is an error (there is nothing to fill from).
    """
    sample = Path(sample)
    rows = _abaw_rows(sample)
    wanted: dict[str, list[int]] = {}
    locations = []
    for line, cells in rows:
        video, frame = parse_location(cells[0], sample, line)
        wanted.setdefault(video, []).append(frame)
        locations.append((cells[0], video, len(wanted[video]) - 1))
    missing = set(wanted) - set(predictions)
    if missing:
        raise SubmissionError(f"{sample}: {len(missing)} videos of the sample file have no predictions: "
                              f"{_listed(missing)} (predict the split that holds them, or check the cache)")
    values, written = {}, WrittenSubmission([], len(rows))
    for video, frames in wanted.items():
        pred = np.asarray(predictions[video])
        pick, filled = nearest(np.arange(len(pred)), np.array(frames))
        values[video] = pred[pick]
        if filled.any():
            written.filled += int(filled.sum())
            written.filled_by_video[video] = int(filled.sum())
    written.unused_videos = sorted(set(predictions) - set(wanted))
    lines = [",".join(ABAW_HEADER)]
    lines += [f"{location},{values[video][k][0]:.6f},{values[video][k][1]:.6f}" for location, video, k in locations]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ABAW_FILE).write_text("\n".join(lines) + "\n")
    written.files.append(out / ABAW_FILE)
    return written


def read_abaw_predictions(path: Path) -> dict[str, VideoFrames]:
    """Valence/arousal per video from one predictions.txt or a folder of per-video .txt files."""
    per_video: dict[str, dict[int, tuple[float, float]]] = {}
    for file in _files(path, ".txt", "ABAW prediction files"):
        for line, cells in _abaw_rows(file):
            video, frame = parse_location(cells[0], file, line)
            try:
                value = (float(cells[1]), float(cells[2]))
            except (IndexError, ValueError):
                raise SubmissionError(f"{file}: line {line}: expected image_location,valence,arousal") from None
            if not all(np.isfinite(value)):
                raise SubmissionError(f"{file}: line {line}: valence/arousal must be finite numbers")
            if frame in per_video.setdefault(video, {}):
                raise SubmissionError(f"{file}: line {line}: {cells[0]} is predicted twice")
            per_video[video][frame] = value
    return {v: _video_frames(rows) for v, rows in per_video.items()}


def _video_frames(rows: dict[int, tuple]) -> VideoFrames:
    frames = np.array(sorted(rows), np.int64)
    return VideoFrames(frames, np.array([rows[f] for f in frames], np.float64).reshape(len(frames), -1))


def read_va_annotations(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(values [n, 2], mask) per video from Aff-Wild2 annotation files (`<video>.txt`, -5 invalid),
    parsed exactly as extraction parses them."""
    from fgvu.extract.datasets.base import DatasetError, parse_va_rows, read_rows

    out = {}
    for file in _files(path, ".txt", "Aff-Wild2 annotation files"):
        try:
            _, rows, first_line = read_rows(file)
        except DatasetError as e:
            raise SubmissionError(str(e)) from None
        out[file.stem] = parse_va_rows(rows, first_line, file, [])
    return out


# ---- DVD ----------------------------------------------------------------------------------------


def _dvd_lines(frame_numbers, prob: np.ndarray, threshold: float) -> list[str]:
    lines = [",".join(DVD_HEADER)]
    for n, p in zip(frame_numbers, prob):
        label = int(p >= threshold)
        text = f"{p:.6f}"
        if not label and float(text) >= threshold:  # rounding must not carry a 0 across the threshold
            text = f"{threshold - 1e-6:.6f}"
        lines.append(f"{n},{label},{text}")
    return lines


def write_dvd_video(out: Path, video: str, prob: np.ndarray, threshold: float = 0.5) -> Path:
    """OUT/<video>.csv with every frame of one video, numbered from 0 (no template)."""
    path = file_in(out, video, ".csv")
    path.write_text("\n".join(_dvd_lines(range(len(prob)), prob, threshold)) + "\n")
    return path


def _frame_column(header: list[str]) -> int | None:
    from fgvu.extract.datasets.base import FRAME_COLUMNS

    lowered = [h.strip().lower() for h in header]
    return next((lowered.index(c) for c in FRAME_COLUMNS if c in lowered), None)


def _numbering(numbers: list[int]) -> int:
    """The first frame's number: 0 when frame 0 appears, else 1 (the rule the DVD adapter reads by)."""
    return 0 if 0 in numbers else 1


def _template_numbers(path: Path) -> list[str]:
    """The frame numbers of a template CSV as written (its frame column), or '0', '1', ... per row."""
    from fgvu.extract.datasets.base import parse_float, read_rows

    header, rows, first_line = read_rows(path)
    col = _frame_column(header) if header is not None else (0 if rows and len(rows[0]) == 2 else None)
    if col is None:
        return [str(i) for i in range(len(rows))]
    numbers = []
    for i, row in enumerate(rows):
        value = parse_float(row[col]) if col < len(row) else None
        if value is None or value < 0 or value != int(value):
            raise SubmissionError(f"{path}: line {first_line + i}: frame number {row[col] if col < len(row) else ''!r} "
                                  "is not a non-negative integer")
        numbers.append(row[col].strip())
    return numbers


def write_dvd_from_template(template: Path, out: Path, predictions: Mapping[str, np.ndarray],
                            threshold: float = 0.5) -> WrittenSubmission:
    """OUT/<video>.csv for every `<video>.csv` of the template folder, with the template's rows
    and frame numbers (0- or 1-based, as the template numbers them); `predictions` maps each video
    to P(violent) per frame."""
    files = _files(template, ".csv", "DVD template files")
    missing = {f.stem for f in files} - set(predictions)
    if missing:
        raise SubmissionError(f"{template}: {len(missing)} videos of the template have no predictions: "
                              f"{_listed(missing)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = WrittenSubmission([], 0, unused_videos=sorted(set(predictions) - {f.stem for f in files}))
    for file in files:
        numbers = _template_numbers(file)
        first = _numbering([int(n) for n in numbers])
        prob = np.asarray(predictions[file.stem], np.float64)
        pick, filled = nearest(np.arange(len(prob)), np.array([int(n) - first for n in numbers], np.int64))
        if filled.any():
            written.filled += int(filled.sum())
            written.filled_by_video[file.stem] = int(filled.sum())
        path = out / f"{file.stem}.csv"
        path.write_text("\n".join(_dvd_lines(numbers, prob[pick], threshold)) + "\n")
        written.files.append(path)
        written.rows += len(numbers)
    return written


def read_dvd_predictions(path: Path) -> dict[str, VideoFrames]:
    """Labels (and probabilities, when given) per video from a folder of `<video>.csv` prediction
    files with a frame column, a `Predicted_Label` (or `Label`) column and optionally
    `Violence_Probability`."""
    from fgvu.extract.datasets.base import parse_float, read_rows

    out = {}
    for file in _files(path, ".csv", "DVD prediction files"):
        header, rows, first_line = read_rows(file)
        lowered = [h.strip().lower() for h in header or []]
        frame_col = _frame_column(lowered) if header else None
        label_col = next((lowered.index(c) for c in ("predicted_label", "label") if c in lowered), None)
        prob_col = next((lowered.index(c) for c in ("violence_probability", "probability", "p_violent")
                         if c in lowered), None)
        if frame_col is None or label_col is None:
            raise SubmissionError(f"{file}: expected a header with a frame column and Predicted_Label "
                                  f"(found {', '.join(header or ['no header'])})")
        parsed: dict[int, tuple] = {}
        for i, row in enumerate(rows):
            cells = [parse_float(row[c]) if c < len(row) else None for c in (frame_col, label_col)]
            p = parse_float(row[prob_col]) if prob_col is not None and prob_col < len(row) else None
            if None in cells or cells[1] not in (0.0, 1.0) or cells[0] < 0 or cells[0] != int(cells[0]) \
                    or (prob_col is not None and (p is None or not 0.0 <= p <= 1.0)):
                raise SubmissionError(f"{file}: line {first_line + i}: expected a frame number, a 0/1 label"
                                      + (" and a probability in [0, 1]" if prob_col is not None else ""))
            if int(cells[0]) in parsed:
                raise SubmissionError(f"{file}: line {first_line + i}: frame {int(cells[0])} is predicted twice")
            parsed[int(cells[0])] = (cells[1], p)
        if not parsed:
            raise SubmissionError(f"{file}: no prediction rows")
        first = _numbering(list(parsed))
        frames = np.array(sorted(parsed), np.int64)
        labels = np.array([[parsed[f][0]] for f in frames], np.float64)
        prob = np.array([parsed[f][1] for f in frames], np.float64) if prob_col is not None else None
        out[file.stem] = VideoFrames(frames - first, labels, prob)
    return out


def read_violence_annotations(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(labels [n, 1], mask) per video from DVD annotation CSVs, parsed exactly as extraction parses them."""
    from fgvu.extract.datasets.base import DatasetError, read_label_table

    out = {}
    for file in _files(path, ".csv", "DVD annotation files"):
        try:
            out[file.stem] = read_label_table(file, [])
        except DatasetError as e:
            raise SubmissionError(str(e)) from None
    return out
