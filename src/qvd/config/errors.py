"""Configuration errors.

ConfigError            any problem with configuration
├── ConfigSyntaxError  a file line that cannot be parsed (file, line, reason)
├── ConfigValueError   a value of the wrong type, an unknown token, a bad reference
└── ConfigFileError    a file that cannot be read
"""

from __future__ import annotations

__all__ = ["ConfigError", "ConfigFileError", "ConfigSyntaxError", "ConfigValueError"]


class ConfigError(Exception):
    """A configuration problem, located where possible.

    ``source`` is a file path (or a description such as ``database (tenant -1)``),
    ``line`` the 1-based line in that file, ``reason`` what is wrong.
    """

    def __init__(self, reason: str, *, source: str | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.source = source
        self.line = line
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = ""
        if self.source is not None:
            where = self.source if self.line is None else f"{self.source}:{self.line}"
            where += ": "
        return f"{where}{self.reason}"


class ConfigSyntaxError(ConfigError):
    """A line of a properties file could not be parsed."""


class ConfigValueError(ConfigError):
    """A token has a value that does not fit, or is not a known token."""


class ConfigFileError(ConfigError):
    """A configuration file could not be read."""
