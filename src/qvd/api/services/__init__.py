"""The service layer: one module per kind of object, each with its ``ACTIONS``."""

__all__: list[str] = []
