"""`fgvu extract`: run the frozen encoders over a dataset into a resumable Zarr cache.

Every option is generated from a field of `ExtractConfig` (fgvu/extract/config.py), which
declares its help, choices, range and default; `[extract]` in ./fgvu.toml overrides those
defaults, and options given on the command line override both.
"""

from __future__ import annotations

from typing import Optional

import typer

from fgvu.commands.common import console_logging, old_progress_option
from fgvu.extract.config import ExtractConfig
from fgvu.options import config_options


@config_options(ExtractConfig)
def extract_cmd(old_progress: Optional[bool] = old_progress_option(), **options) -> None:
    """Decode each video once, cut it into 64-frame windows, run VideoPrism, CLIP and the captioner on
    the sampling grids (and a speech model on the soundtrack, with an audio encoder), and append each
    whole video to the cache. Re-running resumes. `--only audio --into CACHE` adds audio to an existing
    cache without running the other encoders."""
    from fgvu.extract.pipeline import run_extract
    from fgvu.settings import apply_overrides, load_section

    given = {k: v for k, v in options.items() if v is not None}
    if old_progress is not None:
        given.setdefault("progress", old_progress)  # --quiet wins over the old spelling
    cfg = load_section(ExtractConfig(dataset=given["dataset"]), "extract")
    cfg = apply_overrides(cfg, given, "command line")
    with console_logging():
        summary = run_extract(cfg)
    for line in summary.lines():
        typer.echo(line)
    if summary.all_failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("extract")(extract_cmd)
