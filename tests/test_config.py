from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from entityseg_data.config import (
    WorkspaceConfig,
    all_keys,
    apply_overrides,
    env_overrides,
    from_dict,
    load_workspace_config,
    masked_dict,
    save_workspace_config,
    to_dict,
)
from entityseg_data.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    ratio: float = 0.7
    sizes: tuple[int, ...] = (640, 800)
    name: str | None = None


@dataclass(frozen=True)
class Outer:
    steps: int = 10
    amp: bool = False
    inner: Inner = field(default_factory=Inner)


def test_typed_overrides():
    cfg = apply_overrides(
        Outer(),
        ["steps=20", "amp=true", "inner.ratio=0.5", "inner.sizes=[1, 2, 3]", "inner.name=abc"],
    )
    assert cfg.steps == 20 and cfg.amp is True
    assert cfg.inner.ratio == 0.5 and cfg.inner.sizes == (1, 2, 3) and cfg.inner.name == "abc"
    assert Outer().steps == 10  # frozen originals untouched
    assert apply_overrides(cfg, ["inner.name=none"]).inner.name is None


def test_unknown_key_names_closest():
    with pytest.raises(ConfigError, match=r"inner\.ratio"):
        apply_overrides(Outer(), ["inner.ratoi=0.5"])
    with pytest.raises(ConfigError, match="steps"):
        apply_overrides(Outer(), ["stpes=1"])


def test_wrong_type_names_key_and_type():
    with pytest.raises(ConfigError, match=r"steps: expected int, got 'abc'"):
        apply_overrides(Outer(), ["steps=abc"])
    with pytest.raises(ConfigError, match=r"inner.ratio: expected float"):
        apply_overrides(Outer(), ["inner.ratio=[1]"])
    with pytest.raises(ConfigError, match="section"):
        apply_overrides(Outer(), ["inner=3"])
    with pytest.raises(ConfigError, match="KEY=VALUE|dotted.key=value"):
        apply_overrides(Outer(), ["steps"])


def test_round_trip_and_strict_from_dict():
    cfg = apply_overrides(Outer(), ["inner.sizes=[5]"])
    assert from_dict(Outer, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="did you mean 'inner.sizes'"):
        from_dict(Outer, {"inner": {"size": [1]}})


def test_workspace_precedence_and_secrets(tmp_path):
    path = tmp_path / "entityseg.yaml"
    save_workspace_config(
        apply_overrides(WorkspaceConfig(), ["ingest.min_side=500", "ingest.workers=3"]), path
    )
    env = {"ENTITYSEG__INGEST__MIN_SIDE": "1000", "LABEL_STUDIO_API_KEY": "tok-123"}
    cfg = load_workspace_config(path, ["ingest.workers=7"], environ=env)
    assert cfg.ingest.min_side == 1000  # env beats file
    assert cfg.ingest.workers == 7  # flag beats file
    assert cfg.labelstudio.api_key == "tok-123"
    shown = masked_dict(cfg)
    assert shown["labelstudio"]["api_key"] == "********"
    assert "tok-123" not in str(shown)
    # flags beat env
    cfg2 = load_workspace_config(path, ["ingest.min_side=3"], environ=env)
    assert cfg2.ingest.min_side == 3


def test_secret_never_written(tmp_path):
    path = tmp_path / "c.yaml"
    cfg = env_overrides(WorkspaceConfig(), {"LABEL_STUDIO_API_KEY": "s3cret"})
    save_workspace_config(cfg, path)
    assert "s3cret" not in path.read_text()


def test_bad_file_names_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("ingest:\n  min_sidee: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*ingest\.min_side"):
        load_workspace_config(path, environ={})


def test_all_keys_lists_leaves():
    keys = all_keys(WorkspaceConfig)
    assert "ingest.min_side" in keys and "labelstudio.api_key" in keys


def test_a_config_file_read_again_is_a_fresh_copy_of_its_current_text(tmp_path):
    """Parsed texts are remembered (config/machinery.py): a caller changing what it got changes
    no later read, and an edited file is read as edited."""
    from entityseg_data.config.machinery import read_yaml_mapping

    path = tmp_path / "c.yaml"
    path.write_text("ingest:\n  min_side: 3\n  mime_types: [image/png]\n")
    first = read_yaml_mapping(path)
    first["ingest"]["min_side"] = 99
    first["ingest"]["mime_types"].append("image/gif")
    assert read_yaml_mapping(path) == {"ingest": {"min_side": 3, "mime_types": ["image/png"]}}
    path.write_text("ingest:\n  min_side: 4\n")
    assert read_yaml_mapping(path) == {"ingest": {"min_side": 4}}
    path.write_text("ingest: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml_mapping(path)
    with pytest.raises(ConfigError, match="not valid YAML"):  # errors are not remembered away
        read_yaml_mapping(path)


def test_saved_config_text_is_the_pure_python_emitters_and_loads_back(tmp_path):
    """The config is written by libyaml's emitter when PyYAML has it: the same text as
    ``yaml.safe_dump`` (pure Python) for the default config and awkward short values; a long
    double-quoted string may be folded at other places (found by this test), but every text
    loads back to the same data and the file to the same config."""
    import yaml

    from entityseg_data.config.workspace import config_yaml

    cfg = apply_overrides(
        WorkspaceConfig(),
        ["name=wörkspace ✓ " + "x " * 60 + "a: b # c", "export.val_fraction=1e-7"],
    )
    data = masked_dict(cfg)
    odd = {"q": "'\"", "nl": "line1\nline2", "tab": "a\tb", "z": -0.0, "big": 2**40, "n": None}
    plain = masked_dict(WorkspaceConfig())
    for d in (plain, {**plain, "odd": odd}):
        assert config_yaml(d) == yaml.safe_dump(d, sort_keys=False)
    for d in (plain, data, {**data, "odd": odd}):
        assert yaml.safe_load(config_yaml(d)) == d
    path = tmp_path / "c.yaml"
    save_workspace_config(cfg, path)
    assert load_workspace_config(path, environ={}) == cfg
