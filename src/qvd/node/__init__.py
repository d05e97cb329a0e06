"""The node: the ``qvd`` command (``qvd db …``, ``qvd config …``, ``qvd up``) that sets up
and runs an all-in-one node. It sits on top of every other component."""

__all__: list[str] = []
