"""Video names as file names: a name from a cache or a label file never becomes a path by itself.

Names come from outside (a cache copied from elsewhere, a test list, a folder layout's
`test/clip`), so a name such as `../../x`, `/etc/x` or `a/b` must not pick where a file goes.
`safe_file_name` percent-encodes every character that could: the separators `/` and `\\`,
`%` itself, control characters, and a leading `.` (so `.`, `..` and hidden names cannot come
out). Plain names (every Aff-Wild2 and DVD name) are returned unchanged, and the encoding is
reversible with `urllib.parse.unquote`, so two names never share a file. Files keep the real
name inside where their format has a place for it (Aff-Wild2's `image_location` column).
"""

from __future__ import annotations

from pathlib import Path

from fgvu.errors import FgvuError

# Most file systems allow 255 bytes per name; leave room for a suffix such as ".csv".
MAX_NAME_BYTES = 240
_ENCODED = frozenset("/\\%") | {chr(c) for c in range(32)} | {chr(127)}


class UnsafeNameError(FgvuError):
    """A video name that cannot become a file name (empty, or too long once encoded)."""


def _encode(char: str) -> str:
    return "".join(f"%{b:02X}" for b in char.encode("utf-8"))


def safe_file_name(name: str, suffix: str = "") -> str:
    """`name` + `suffix` as one file name that stays inside its folder; UnsafeNameError if impossible."""
    if not name:
        raise UnsafeNameError("a video has an empty name; it cannot name a file")
    encoded = "".join(_encode(c) if c in _ENCODED else c for c in name)
    if encoded.startswith("."):
        encoded = _encode(".") + encoded[1:]
    file_name = encoded + suffix
    if len(file_name.encode("utf-8")) > MAX_NAME_BYTES:
        raise UnsafeNameError(f"video name {name[:60]!r}... is too long for a file name "
                              f"({len(file_name.encode('utf-8'))} bytes encoded, at most {MAX_NAME_BYTES})")
    return file_name


def file_in(folder: str | Path, name: str, suffix: str = "") -> Path:
    """The file for video `name` directly inside `folder` (see `safe_file_name`)."""
    return Path(folder) / safe_file_name(name, suffix)
