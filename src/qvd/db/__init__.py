"""The QVD database: models, migrations, connection targets, the embedded cluster,
notification channels, password hashing and effective ACLs.

Daemons start with ``database_target(config)`` → ``make_engine`` →
``require_current_schema``; they listen with ``Listener`` on the names in
``channels``.
"""

from qvd.db.acls import administrator_acls, role_acls
from qvd.db.bootstrap import InitResult, initialize_database, reset_admin_password
from qvd.db.dbconfig import LiveConfig, config_with_db, read_config_rows
from qvd.db.engine import (
    ConnectionLimits,
    engine_target,
    limited_target,
    make_engine,
    make_sessionmaker,
)
from qvd.db.errors import DatabaseError, DatabaseUnreachable, EmbeddedClusterError, SchemaMismatch
from qvd.db.failover import CommitOutcomeUnknown, lost_connection, run_transaction
from qvd.db.listener import Listener, Notification
from qvd.db.localpg import EmbeddedCluster, embedded_cluster
from qvd.db.migrate import (
    SchemaStatus,
    downgrade,
    require_current_schema,
    schema_status,
    upgrade,
)
from qvd.db.passwords import generate_password, hash_password, verify_password
from qvd.db.target import DATABASE_URL_ENV, DatabaseTarget, database_target

__all__ = [
    "DATABASE_URL_ENV",
    "CommitOutcomeUnknown",
    "ConnectionLimits",
    "DatabaseError",
    "DatabaseTarget",
    "DatabaseUnreachable",
    "EmbeddedCluster",
    "EmbeddedClusterError",
    "InitResult",
    "Listener",
    "LiveConfig",
    "Notification",
    "SchemaMismatch",
    "SchemaStatus",
    "administrator_acls",
    "config_with_db",
    "database_target",
    "downgrade",
    "embedded_cluster",
    "engine_target",
    "generate_password",
    "hash_password",
    "initialize_database",
    "limited_target",
    "lost_connection",
    "make_engine",
    "make_sessionmaker",
    "read_config_rows",
    "require_current_schema",
    "reset_admin_password",
    "role_acls",
    "run_transaction",
    "schema_status",
    "upgrade",
    "verify_password",
]
