"""QVD configuration: tokens, their defaults, the properties file and the layering.

Import from here; the modules behind it are ``tokens`` (the table), ``properties``
(the file format), ``values`` (typed reading), ``loader`` (the layers) and ``errors``.
"""

from qvd.config.errors import ConfigError, ConfigFileError, ConfigSyntaxError, ConfigValueError
from qvd.config.loader import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    GLOBAL_TENANT,
    Config,
    Setting,
    config_from_text,
    load_config,
)
from qvd.config.tokens import FAMILIES, TOKENS, Family, Kind, Token

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "FAMILIES",
    "GLOBAL_TENANT",
    "TOKENS",
    "Config",
    "ConfigError",
    "ConfigFileError",
    "ConfigSyntaxError",
    "ConfigValueError",
    "Family",
    "Kind",
    "Setting",
    "Token",
    "config_from_text",
    "load_config",
]
