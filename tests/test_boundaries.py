"""The two stages stay apart: training never loads the encoders' frameworks, extraction never loads training."""

import subprocess
import sys


def loaded_modules(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_fusion_imports_no_encoder_framework():
    mods = loaded_modules("import fgvu.fusion.train, fgvu.fusion.evaluate, fgvu.ablations.runner")
    assert "torch" in mods  # the check can see what was imported
    assert not mods & {"jax", "flax", "open_clip", "transformers", "av"}


def test_extraction_imports_no_training_code():
    code = "import fgvu.extract.pipeline, fgvu.extract.encoders.registry; " \
           "print(any(m.startswith(('fgvu.fusion', 'fgvu.ablations')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", "import sys; " + code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
