"""The application shell: ``app`` (the app factory that mounts the faces), ``state``
(what one app holds and request authentication), ``server`` (uvicorn over TLS),
``tls`` (the certificate) and ``metrics`` (Prometheus ``/metrics``).
"""

__all__: list[str] = []
