"""A video's display matrix as the pixel moves that make its stored frames upright.

Phones store a portrait video as landscape frames plus a display matrix (FFmpeg's
AV_FRAME_DATA_DISPLAYMATRIX: nine int32, the 2x2 part in 16.16 fixed point) that players apply.
The matrix maps a stored pixel (x, y) to (a*x + c*y, b*x + d*y) on screen, image y pointing
down. For the matrices video files carry (rotations by multiples of 90 degrees, optionally
mirrored) that is a transpose and/or flips of the pixel array, which `Orientation.apply` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIXED_ONE = 1 << 16  # 1.0 in the matrix's 16.16 fixed point


@dataclass(frozen=True)
class Orientation:
    """How a stored frame becomes the upright one: transpose first, then flip rows and/or columns."""

    degrees: int = 0  # the counter-clockwise rotation shown on screen, in (-180, 180]
    mirrored: bool = False
    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @property
    def upright(self) -> bool:
        """True when stored frames are shown as they are."""
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def display_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) on screen of a stored height x width frame."""
        return (width, height) if self.transpose else (height, width)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """A stored H x W x C frame -> the upright frame (contiguous)."""
        if self.upright:
            return image
        out = image.transpose(1, 0, 2) if self.transpose else image
        if self.flip_rows:
            out = out[::-1]
        if self.flip_cols:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def describe(self) -> str:
        """'rotated -90 degrees', 'rotated 0 degrees, mirrored', ..."""
        return f"rotated {self.degrees} degrees" + (", mirrored" if self.mirrored else "")


def orientation_of(matrix, degrees: float) -> Orientation:
    """The Orientation of a display matrix (nine ints, or None: upright); `degrees` is its rotation
    counter-clockwise (PyAV's VideoFrame.rotation). ValueError when it is not a multiple of 90 degrees."""
    if matrix is None:
        return Orientation()
    m = np.asarray(matrix, np.float64).reshape(-1)[[0, 1, 3, 4]] / FIXED_ONE
    a, b, c, d = (round(v) for v in m)
    if np.abs(m - (a, b, c, d)).max() > 1e-3 or abs(a * d - b * c) != 1 or a * b or c * d:
        raise ValueError(f"the display matrix rotates by {degrees:g} degrees (or shears); only multiples "
                         "of 90 degrees are supported")
    mirrored = a * d - b * c < 0
    degrees = int(round(degrees))
    if a == 0:  # x' = c*y, y' = b*x: rows and columns swap
        return Orientation(degrees, mirrored, transpose=True, flip_rows=b < 0, flip_cols=c < 0)
    return Orientation(degrees, mirrored, flip_rows=d < 0, flip_cols=a < 0)
