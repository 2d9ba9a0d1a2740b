import pytest

from fgvu.fusion.config import FitConfig, ModelConfig
from fgvu.settings import SettingsError, apply_overrides, find_cache, load_section, paths


def test_toml_overrides_typed_fields(tmp_path):
    toml = tmp_path / "fgvu.toml"
    toml.write_text('[fit]\nepochs = 3\nlr = 1\naugment = ["noise"]\n[paths]\ncaches = "elsewhere"\n')
    cfg = load_section(FitConfig(), "fit", toml)
    assert cfg.epochs == 3 and cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.augment == ("noise",)
    assert paths(toml).caches == "elsewhere"
    assert load_section(FitConfig(), "fit", tmp_path / "missing.toml") == FitConfig()


def test_bad_overrides_are_named(tmp_path):
    with pytest.raises(SettingsError, match="unknown keys \\['epoch'\\]"):
        apply_overrides(FitConfig(), {"epoch": 3}, "fgvu.toml [fit]")
    with pytest.raises(SettingsError, match="fit.epochs"):
        apply_overrides(FitConfig(), {"epochs": "many"}, "fit")
    with pytest.raises(SettingsError, match="fusion"):
        apply_overrides(ModelConfig(), {"fusion": "sum"}, "model")
    bad = tmp_path / "fgvu.toml"
    bad.write_text("[fit\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_section(FitConfig(), "fit", bad)


def test_data_root_honours_env(monkeypatch):
    monkeypatch.setenv("FGVU_DATA", "/datasets")
    assert str(paths().data_root("dvd")) == "/datasets/dvd"
    monkeypatch.delenv("FGVU_DATA")
    assert str(paths().data_root("dvd")) == "data/dvd"


def test_find_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match="no cache under caches/"):
        find_cache(None)
    for name in ("dvd", "aff-wild2"):
        (tmp_path / "caches" / name).mkdir(parents=True)
        (tmp_path / "caches" / name / "cache.json").write_text("{}")
        if name == "dvd":
            assert find_cache(None).name == "dvd"
    with pytest.raises(SettingsError, match="several caches.*aff-wild2, dvd"):
        find_cache(None)
    assert find_cache("aff-wild2").name == "aff-wild2"
    with pytest.raises(SettingsError, match="fgvu extract --dataset folder"):
        find_cache("folder")


@pytest.mark.parametrize("value", ["1e-3", True, [1.0]])
def test_float_fields_reject_non_numbers(value):
    with pytest.raises(SettingsError, match="fit.lr: expected a number"):
        apply_overrides(FitConfig(), {"lr": value}, "fit")
    assert apply_overrides(FitConfig(), {"lr": 2}, "fit").lr == 2.0


def test_model_table_inside_fit_points_to_its_own_section(tmp_path):
    toml = tmp_path / "fgvu.toml"
    toml.write_text("[fit]\nmodel = { d_model = 64 }\n")
    with pytest.raises(SettingsError, match=r"\[fit\]\.model: .*under \[model\]"):
        load_section(FitConfig(), "fit", toml)


def test_unknown_section_is_named_with_the_known_ones(tmp_path):
    toml = tmp_path / "fgvu.toml"
    toml.write_text("[fitt]\nepochs = 3\n")
    with pytest.raises(SettingsError, match=r"fgvu.toml: unknown section\(s\) \[fitt\]; "
                                            r"known sections: \[paths\], \[extract\], \[fit\], \[model\]"):
        load_section(FitConfig(), "fit", toml)
    toml.write_text("epochs = 3\n")
    with pytest.raises(SettingsError, match="unknown section"):
        paths(toml)
    toml.write_text("fit = 3\n")
    with pytest.raises(SettingsError, match=r"fit must be a section \(\[fit\]\)"):
        load_section(FitConfig(), "fit", toml)


def test_ranges_apply_to_fgvu_toml(tmp_path):
    with pytest.raises(SettingsError, match=r"\[fit\]\.lr: -1 is out of range; it must be >0"):
        apply_overrides(FitConfig(), {"lr": -1}, "fgvu.toml [fit]")
    with pytest.raises(SettingsError, match=r"model\.modalities: 'x' is not one of v, i, t"):
        apply_overrides(ModelConfig(), {"modalities": ["v", "x"]}, "model")
    assert apply_overrides(FitConfig(), {"augment": ["noise"]}, "fit").augment == ("noise",)
