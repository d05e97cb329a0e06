"""Database errors.

DatabaseError
├── DatabaseUnreachable   cannot connect (says where it tried, never the password)
├── SchemaMismatch        the schema is missing, behind or ahead of this software
└── EmbeddedClusterError  the node's own PostgreSQL could not be created, started or stopped
"""

from __future__ import annotations

__all__ = ["DatabaseError", "DatabaseUnreachable", "EmbeddedClusterError", "SchemaMismatch"]


class DatabaseError(Exception):
    """A problem with the database."""


class DatabaseUnreachable(DatabaseError):
    """The database cannot be reached."""


class SchemaMismatch(DatabaseError):
    """The database schema is not the one this software was built for."""


class EmbeddedClusterError(DatabaseError):
    """The embedded PostgreSQL cluster failed."""
