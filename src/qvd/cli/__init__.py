"""``qa``, the admin command line: a client of the admin API only (it never touches
the database). ``ApiClient`` is the typed client of ``POST /api`` it is built on."""

from qvd.cli.client import ApiClient, ApiReply, ClientError, Credentials
from qvd.cli.main import main, run

__all__ = ["ApiClient", "ApiReply", "ClientError", "Credentials", "main", "run"]
