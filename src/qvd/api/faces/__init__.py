"""The API's faces: how a request arrives and how its answer is shaped.

``rest`` (shared machinery of ``/api/v1``) with ``routes`` (one router per resource) and
``schemas`` (its bodies); ``action`` (QVD's ``POST /api``); ``ws`` (``/api/ws``) with
``notifyhub`` (the one LISTEN connection behind it). Every face runs actions through
``qvd.api.actions.dispatch``.
"""

__all__: list[str] = []
