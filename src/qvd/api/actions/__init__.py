"""The action machinery under every face: ``core`` (an action's request, result and
context), ``dispatch`` (the catalogue and ``run_action``), ``listing`` (filters, fields,
paging), ``audit`` (the audit log), ``principal`` (who calls and their ACLs) and ``auth``
(administrator login, sessions, the failed-login limit). What each action does is in
``qvd.api.services``.
"""

__all__: list[str] = []
