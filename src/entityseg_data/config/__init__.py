"""Configuration: the frozen-dataclass machinery and every workspace section.

* :mod:`.machinery`: strict dict/YAML <-> dataclass conversion, typed ``--set`` overrides,
  environment overrides, secret masking;
* :mod:`entityseg_data.config_fields`: allowed values of fields (ranges, patterns), checked when a
  section is built, and secret fields;
* the sections, one module each: :mod:`.ingest`, :mod:`.annotation` (Label Studio and workflow),
  :mod:`.evaluation`, :mod:`.stats`, :mod:`.export`; :mod:`.workspace` composes them into
  :class:`WorkspaceConfig`.

This package is core: it imports no stage (stages import their section from here).
"""

from entityseg_data.config.annotation import AnnotationConfig, LabelStudioConfig
from entityseg_data.config.evaluation import EvaluationConfig
from entityseg_data.config.export import ExportConfig
from entityseg_data.config.ingest import IngestConfig
from entityseg_data.config.machinery import (
    ENV_PREFIX,
    MASK,
    all_keys,
    apply_overrides,
    coerce,
    dumps_json,
    env_overrides,
    from_dict,
    load_yaml_config,
    masked_dict,
    parse_override,
    set_key,
    to_dict,
)
from entityseg_data.config.selection import SelectionConfig
from entityseg_data.config.stats import StatsConfig
from entityseg_data.config.workspace import (
    WorkspaceConfig,
    load_workspace_config,
    save_workspace_config,
)
from entityseg_data.config_fields import (
    SECRET,
    Checked,
    ConfigValueError,
    bounded,
    secret_field,
)

__all__ = [
    "ENV_PREFIX",
    "MASK",
    "SECRET",
    "AnnotationConfig",
    "Checked",
    "ConfigValueError",
    "EvaluationConfig",
    "ExportConfig",
    "IngestConfig",
    "LabelStudioConfig",
    "SelectionConfig",
    "StatsConfig",
    "WorkspaceConfig",
    "all_keys",
    "apply_overrides",
    "bounded",
    "coerce",
    "dumps_json",
    "env_overrides",
    "from_dict",
    "load_workspace_config",
    "load_yaml_config",
    "masked_dict",
    "parse_override",
    "save_workspace_config",
    "secret_field",
    "set_key",
    "to_dict",
]
