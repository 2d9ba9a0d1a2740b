"""`fgvu convert`: turn official checkpoints into the local formats fgvu loads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fgvu.options import with_default


convert_app = typer.Typer(no_args_is_help=True, help="Convert official checkpoints into fgvu's local formats.")

_FILE = dict(exists=True, dir_okay=False, readable=True)


@convert_app.command("minigpt4")
def minigpt4(
    eva_vit: Annotated[Path, typer.Option("--eva-vit", help="EVA ViT-g weights (eva_vit_g.pth).", **_FILE)],
    minigpt4_ckpt: Annotated[
        Path, typer.Option("--minigpt4-ckpt", help="MiniGPT-4's pretrained_minigpt4*.pth (llama_proj).", **_FILE)
    ],
    llm: Annotated[
        Path,
        typer.Option("--llm", help="Vicuna v0 / Llama-2-chat transformers directory.", exists=True, file_okay=False),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output directory for the converted model.")],
    qformer: Annotated[
        Path | None,
        typer.Option(
            "--qformer", help="BLIP-2 Q-Former checkpoint (blip2_pretrained_flant5xxl.pth); vicuna0 only.", **_FILE
        ),
    ] = None,
    variant: Annotated[
        str, typer.Option("--variant", help=with_default("vicuna0 (Q-Former) or llama2 (4-token concat).", "vicuna0"),
                          show_default=False)
    ] = "vicuna0",
) -> None:
    """Convert MiniGPT-4's official files into one directory for `captioner:minigpt4:<DIR>`."""
    from fgvu.extract.encoders.minigpt4_convert import convert_minigpt4

    path = convert_minigpt4(eva_vit, qformer, minigpt4_ckpt, llm, out, variant=variant)
    typer.echo(f"converted MiniGPT-4 ({variant}) -> {path} (encoder name: captioner:minigpt4:{path})")


def register(app: typer.Typer) -> None:
    """Add the `convert` command group to the main app."""
    app.add_typer(convert_app, name="convert", help="Convert official checkpoints into fgvu's local formats.")
