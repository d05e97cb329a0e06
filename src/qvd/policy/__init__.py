"""Policies (issue #17): rules one leader node at a time applies to the desktops.

``decide`` (pure) says what the policies ask for; ``store`` reads the database and
acts through the usual requests for change; ``leader`` elects the node that acts
(a PostgreSQL advisory lock); ``runner`` is the loop the HKD runs.
"""

__all__: list[str] = []
