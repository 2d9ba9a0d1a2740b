"""Options declared once (fgvu.options): config fields and command options stay in sync, --help, checks, flags."""

import dataclasses
import importlib.metadata
import inspect
import logging
import re
import subprocess
import sys
import typing
from types import SimpleNamespace
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

import fgvu
from fgvu import cli, options
from fgvu.cli import app
from fgvu.commands.common import console_logging
from fgvu.extract.config import ExtractConfig
from fgvu.fusion.config import FitConfig, ModelConfig, build_fit_config
from fgvu.inference.config import PredictConfig, StreamConfig
from fgvu.modalities import BY_NAME, MODALITIES
from fgvu.options import OptionError, config_options, opt
from fgvu.synth.features import write_feature_cache

runner = CliRunner(env={"COLUMNS": "250"})  # wide enough that --help never wraps a choice list
# ModelConfig.recon is set by fit itself (from --recon-weight), so it is the one field without an option
NOT_OPTIONS = {"recon"}
# options that are not config fields; old_progress is the hidden --progress/--no-progress
NON_FIELD_OPTIONS = {
    "fit": {"cache", "dataset", "task", "out", "force", "allow_partial", "quiet", "old_progress"},
    "extract": {"old_progress"},
    "predict": {"run", "video_files", "split", "out", "cache", "sample", "allow_unfinished", "allow_partial",
                "threads"},
    "stream": {"run"},
}
# every option name users may have in scripts (from before the options were generated)
OLD_NAMES = {
    "fit": "--dataset --task --out --modalities --fusion --query --d-model --gru-layers --bidirectional "
           "--unidirectional --heads --mlp-hidden --dropout --image-frames --captions --video-frames --epochs "
           "--batch-size --lr --weight-decay --warmup-epochs --schedule --grad-clip --patience --seed --loss "
           "--mse-weight --focal-gamma --class-weights --no-class-weights --recon-weight --augment --noise-std "
           "--modality-dropout --temporal-mask --mixup-alpha --val-split --val-fraction --normalize --no-normalize "
           "--device --force --progress --quiet",
    "extract": "--dataset --root --out --encoders --video-encoder --image-encoder --captioner --stride "
               "--caption-every --video-frames --parts --part --device --caption-prompt --reuse-captions --frames "
               "--labels --limit --engine --image-batch --clip-batch --caption-batch --progress --no-progress",
}
CONFIGS = {"fit": FitConfig, "extract": ExtractConfig, "predict": PredictConfig, "stream": StreamConfig}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def command(*path: str):
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def field_names(cls) -> set[str]:
    """Every field of a config dataclass, nested dataclasses (FitConfig.model) included."""
    hints = typing.get_type_hints(cls)
    names = set()
    for f in dataclasses.fields(cls):
        names |= field_names(hints[f.name]) if dataclasses.is_dataclass(hints[f.name]) else {f.name}
    return names


def help_text(*path: str) -> str:
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize("name", ["fit", "extract", "predict", "stream"])
def test_every_field_is_an_option_and_every_option_a_field(name):
    params = {p.name for p in command(name).params}
    fields = field_names(CONFIGS[name])
    assert fields - NOT_OPTIONS - params == set(), "config fields without an option"
    assert params - fields == NON_FIELD_OPTIONS[name], "options that are neither a field nor listed as extra"
    assert not params & NOT_OPTIONS


@pytest.mark.parametrize("name", ["fit", "extract"])
def test_old_option_names_still_work(name):
    names = {opt for p in command(name).params for opt in (*p.opts, *p.secondary_opts)}
    assert set(OLD_NAMES[name].split()) <= names
    assert "--quiet" in names


def test_a_field_without_a_spec_cannot_become_an_option():
    @dataclasses.dataclass(frozen=True)
    class Bare:
        width: int = 3

    with pytest.raises(TypeError, match="Bare.width has no option spec"):
        config_options(Bare)(lambda **options: None)


@pytest.mark.parametrize("path", [("fit",), ("extract",), ("evaluate",), ("predict",), ("ablations",), ("report",),
                                  ("demo",), ("stream",), ("cache", "export"), ("synth", "videos"), ("synth", "features"),
                                  ("convert", "minigpt4")])
def test_help_shows_defaults_in_one_style(path):
    text = help_text(*path)
    assert "[default:" not in text and "default: (" not in text


@pytest.mark.parametrize("name", ["fit", "extract", "predict", "stream"])
def test_help_shows_each_fields_real_default_and_choices(name):
    text = help_text(name)
    for field in options.declared(CONFIGS[name]):
        if not field.spec.option:
            continue
        shown = options.format_default(field)
        if shown is not None:
            assert f"(default: {shown})" in text, field.name
        if field.choices is not None:
            assert f"<{'|'.join(field.choices)}>" in text, field.name
    assert "--no-progress" not in text and "--progress" not in text  # the old spellings are hidden


def test_fit_help_choices_come_from_the_registries():
    text = help_text("fit")
    assert f"<{'|'.join(MODALITIES)}>" in text and f"<{'|'.join(BY_NAME)}>" in text
    assert "<xattn|xattn-sym|concat>" in text and "(default: 0.001)" in text and "Must be >0." in text
    assert "(default: --bidirectional)" in text and "(default: ccc for va, ce for violence)" in text
    assert "Must be in [0,1)." in text and "(default: auto)" in text


@pytest.mark.parametrize("args, message", [
    (["--lr", "nan"], r"--lr: nan is not a finite number; it must be >0"),
    (["--lr", "-1"], r"--lr: -1 is out of range; it must be >0"),
    (["--temporal-mask", "1.5"], r"--temporal-mask: 1.5 is out of range; it must be in \[0,1\)"),
    (["--noise-std", "-1"], r"--noise-std: -1 is out of range; it must be >=0"),
    (["--warmup-epochs", "-3"], r"--warmup-epochs: -3 is out of range; it must be >=0"),
    (["--val-fraction", "1"], r"--val-fraction: 1 is out of range; it must be in \(0,1\)"),
    (["--epochs", "0"], r"--epochs: 0 is out of range; it must be >=1"),
    (["--batch-size", "many"], r"--batch-size 'many': not an integer"),
    # issue 11 made audio a modality (and --query audio valid): an unknown name is still refused
    (["--query", "speech"], r"--query: 'speech' is not one of video, image, text, audio"),
])
def test_fit_refuses_bad_values_at_parse_time(tmp_path, args, message):
    # the cache does not exist: the option is refused before anything looks at it
    result = invoke("fit", tmp_path / "no-cache", *args)
    assert isinstance(result.exception, OptionError), result.output
    assert re.search(message, str(result.exception))


@pytest.mark.parametrize("args, message", [
    (["--stride", "0"], "--stride: 0 is out of range; it must be >=1"),
    (["--image-batch", "-4"], "--image-batch: -4 is out of range; it must be >=1"),
    (["--video-frames", "8,x"], "--video-frames '8,x': expected comma-separated integers"),
    (["--video-frames", "8,0"], "--video-frames: 0 is out of range; it must be >=1"),
    (["--engine", "slurm"], "--engine: 'slurm' is not one of local, ray"),
])
def test_extract_refuses_bad_values_at_parse_time(args, message):
    result = invoke("extract", "--dataset", "dvd", *args)
    assert isinstance(result.exception, OptionError), result.output
    assert message in str(result.exception)


def test_fgvu_toml_values_are_checked_against_the_same_specs(tmp_path):
    from fgvu.settings import SettingsError, load_section

    toml = tmp_path / "fgvu.toml"
    toml.write_text("[fit]\ntemporal_mask = 1.0\n[model]\nquery = \"speech\"\n")  # audio is valid since issue 11
    with pytest.raises(SettingsError, match=r"\[fit\]\.temporal_mask: 1 is out of range; it must be in \[0,1\)"):
        load_section(FitConfig(), "fit", toml)
    with pytest.raises(SettingsError, match=r"\[model\]\.query: 'speech' is not one of video, image, text, audio"):
        load_section(ModelConfig(), "model", toml)


def test_build_fit_config_precedence(tmp_path):
    toml = tmp_path / "fgvu.toml"
    toml.write_text("[fit]\nepochs = 3\nlr = 0.01\n[model]\nd_model = 32\n")
    cfg = build_fit_config({"lr": 0.5, "heads": 2, "seed": None}, toml)
    assert (cfg.epochs, cfg.lr, cfg.seed) == (3, 0.5, FitConfig().seed)  # toml, command line, dataclass
    assert (cfg.model.d_model, cfg.model.heads) == (32, 2)
    assert build_fit_config(toml=tmp_path / "none.toml") == FitConfig()
    assert FitConfig().device == "auto"


def test_generated_options_on_a_toy_config():
    @dataclasses.dataclass(frozen=True)
    class Toy:
        mode: Literal["fast", "slow"] = opt("fast", "How.")
        steps: int = opt(2, "Steps.", ge=1, le=9)
        loud: bool = opt(True, "Noise.", flag="--loud/--soft")

    seen = []

    @config_options(Toy)
    def toy(name: str = typer.Option("x"), **given) -> None:
        seen.append({"name": name, **given})

    toy_app = typer.Typer()
    toy_app.command()(toy)
    toy_app.command("other")(lambda: None)
    assert runner.invoke(toy_app, ["toy", "--mode", "slow", "--steps", "9", "--soft"]).exit_code == 0
    assert runner.invoke(toy_app, ["toy"]).exit_code == 0
    assert seen == [{"name": "x", "mode": "slow", "steps": 9, "loud": False},
                    {"name": "x", "mode": None, "steps": None, "loud": None}]  # None: not given
    assert "'medium' is not one of fast, slow" in str(runner.invoke(toy_app, ["toy", "--mode", "medium"]).exception)
    assert "it must be in [1,9]" in str(runner.invoke(toy_app, ["toy", "--steps", "10"]).exception)
    text = " ".join(runner.invoke(toy_app, ["toy", "--help"]).output.split())
    assert "<fast|slow>" in text and "(default: --loud)" in text and "Must be in [1,9]." in text


@pytest.fixture()
def fake_extract(monkeypatch):
    seen = []

    def run_extract(cfg):
        seen.append(cfg)
        return SimpleNamespace(lines=lambda: ["done"], all_failed=False)

    monkeypatch.setattr("fgvu.extract.pipeline.run_extract", run_extract)
    return seen


@pytest.mark.parametrize("args, progress", [
    ([], True), (["--quiet"], False), (["--no-progress"], False), (["--progress"], True),
    (["--progress", "--quiet"], False),
])
def test_extract_quiet_and_the_old_no_progress(fake_extract, args, progress):
    result = invoke("extract", "--dataset", "dvd", *args)
    assert result.exit_code == 0, result.output
    assert fake_extract[-1].progress is progress


def test_extract_quiet_from_fgvu_toml(fake_extract, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fgvu.toml").write_text("[extract]\nprogress = false\nstride = 32\n")
    assert invoke("extract", "--dataset", "dvd", "--stride", "64").exit_code == 0
    assert fake_extract[-1].progress is False and fake_extract[-1].stride == 64


@pytest.mark.parametrize("args, progress", [([], True), (["--quiet"], False), (["--no-progress"], False),
                                            (["--progress"], True)])
def test_fit_quiet(tmp_path_factory, monkeypatch, args, progress):
    cache = write_feature_cache(tmp_path_factory.mktemp("q") / "c", videos=4, frames=150, dims=8)
    seen = []

    def fit(cache, cfg, out, progress=True, overwrite=False, allow_partial=False):
        seen.append(progress)
        return {"val": {"ccc_mean": 0.5}, "best_epoch": 1, "epochs_run": 1}

    monkeypatch.setattr("fgvu.fusion.train.fit", fit)
    result = invoke("fit", cache, "--out", cache.parent / "run", *args)
    assert result.exit_code == 0, result.output
    assert seen == [progress]


@pytest.mark.parametrize("path", [("ablations",), ("demo",)])
def test_other_long_commands_have_quiet(path):
    assert "--quiet" in {opt for p in command(*path).params for opt in p.opts}


def test_version(monkeypatch):
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"fgvu {importlib.metadata.version('fgvu')}"

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert cli.version() == fgvu.__version__ == "0.2.0"


def test_log_lines_print_once_even_with_a_root_handler(capsys):
    root_handler = logging.StreamHandler(sys.stderr)  # what a library's logging.basicConfig() installs
    logging.getLogger().addHandler(root_handler)
    try:
        with console_logging():
            logging.getLogger("fgvu.extract.pipeline").warning("video x failed: not a video")
    finally:
        logging.getLogger().removeHandler(root_handler)
    err = capsys.readouterr().err
    assert err.count("video x failed") == 1 and "WARNING video x failed: not a video" in err
    fgvu_logger = logging.getLogger("fgvu")
    assert fgvu_logger.propagate and not fgvu_logger.handlers  # left as it was found


def test_ablations_command_does_not_import_fit_command():
    code = "import sys, fgvu.commands.ablations; print('fgvu.commands.fit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _leaf_commands():
    """(path, command function) of every command of the app, groups walked."""
    def walk(cmd, path):
        if getattr(cmd, "commands", None):
            for name, sub in cmd.commands.items():
                yield from walk(sub, (*path, name))
        else:
            yield path, cmd.callback.__wrapped__

    yield from walk(typer.main.get_command(app), ())


def _numeric_options():
    """(command path, parameter, int or float) of every numeric parameter of every command."""
    for path, function in _leaf_commands():
        for p in inspect.signature(function, eval_str=True).parameters.values():
            if options._base(p.annotation) in (int, float):
                yield path, p.name, options._base(p.annotation)


# the arguments a command needs before it looks at its options (none of these paths exist)
REQUIRED = {("extract",): ["--dataset", "dvd"], ("synth", "videos"): ["nowhere"], ("synth", "features"): ["nowhere"]}


def test_every_numeric_option_declares_a_range_and_refuses_values_outside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = list(_numeric_options())
    assert {(p, n) for p, n, _ in found} >= {(("fit",), "lr"), (("ablations",), "seeds"), (("demo",), "epochs"),
                                             (("synth", "videos"), "frames")}
    helps = {path: help_text(*path) for path in {path for path, _, _ in found}}
    for path, name, kind in found:
        flag = "--" + name.replace("_", "-")
        assert "Must be" in " ".join(helps[path].split(flag, 1)[1].split()[:60]), (path, flag)
        bad = ["-1000000000"] if kind is int else ["-1e9", "nan"]
        for value in bad:
            result = invoke(*path, *REQUIRED.get(path, []), flag, value)
            assert isinstance(result.exception, OptionError), (path, flag, value, result.output)
            assert str(result.exception).startswith(f"{flag}: ") and "it must be" in str(result.exception)
    assert not (tmp_path / "nowhere").exists()
