"""Initial schema: every table of the data model (reference §1, DESIGN §2).

Revision ID: 0001
Revises:
Create Date: 2026-11-25 21:06:42.094910
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acls",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=80), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acls")),
        sa.UniqueConstraint("name", name=op.f("uq_acls_name")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("administrator_id", sa.Integer(), nullable=True),
        sa.Column("administrator_name", sa.String(length=64), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("tenant_name", sa.String(length=80), nullable=True),
        sa.Column("action", sa.String(length=80), nullable=False),
        sa.Column(
            "type_of_action",
            sa.Enum(
                "create",
                "create_or_update",
                "delete",
                "see",
                "update",
                "exec",
                "login",
                name="log_type_of_action_enum",
            ),
            nullable=False,
        ),
        sa.Column("arguments", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "qvd_object",
            sa.Enum(
                "user",
                "vm",
                "log",
                "host",
                "osf",
                "di",
                "role",
                "administrator",
                "tenant",
                "acl",
                "config",
                "tenant_view",
                "admin_view",
                "property",
                name="log_qvd_object_enum",
            ),
            nullable=True,
        ),
        sa.Column("object_id", sa.Integer(), nullable=True),
        sa.Column("object_name", sa.String(length=1024), nullable=True),
        sa.Column(
            "time", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=80), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("superadmin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(
        op.f("ix_audit_log_administrator_id"), "audit_log", ["administrator_id"], unique=False
    )
    op.create_index(op.f("ix_audit_log_tenant_id"), "audit_log", ["tenant_id"], unique=False)
    op.create_index(op.f("ix_audit_log_time"), "audit_log", ["time"], unique=False)
    op.create_table(
        "host_cmds",
        sa.Column("name", sa.String(length=12), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_host_cmds")),
    )
    op.create_table(
        "host_states",
        sa.Column("name", sa.String(length=12), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_host_states")),
    )
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("name", sa.String(length=127), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("address", sa.String(length=127), nullable=False),
        sa.Column("frontend", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("backend", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("creation_admin_id", sa.Integer(), nullable=True),
        sa.Column(
            "creation_date",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hosts")),
        sa.UniqueConstraint("address", name=op.f("uq_hosts_address")),
        sa.UniqueConstraint("name", name=op.f("uq_hosts_name")),
    )
    op.create_table(
        "ssl_configs",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_ssl_configs")),
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "language",
            sa.Enum("es", "en", "auto", "default", name="language_enum"),
            server_default="auto",
            nullable=False,
        ),
        sa.Column("block", sa.Integer(), server_default="10", nullable=False),
        sa.Column("blocked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("creation_admin_id", sa.Integer(), nullable=True),
        sa.Column(
            "creation_date",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )
    op.create_table(
        "user_auth_parameters",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("parameters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_auth_parameters")),
    )
    op.create_table(
        "user_cmds",
        sa.Column("name", sa.String(length=12), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_user_cmds")),
    )
    op.create_table(
        "user_states",
        sa.Column("name", sa.String(length=12), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_user_states")),
    )
    op.create_table(
        "vm_cmds",
        sa.Column("name", sa.String(length=12), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_vm_cmds")),
    )
    op.create_table(
        "vm_states",
        sa.Column("name", sa.String(length=12), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_vm_states")),
    )
    op.create_table(
        "administrators",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password", sa.String(length=255), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "language",
            sa.Enum("es", "en", "auto", "default", name="language_enum"),
            server_default="auto",
            nullable=False,
        ),
        sa.Column("block", sa.Integer(), server_default="10", nullable=False),
        sa.Column("creation_admin_id", sa.Integer(), nullable=True),
        sa.Column(
            "creation_date",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_administrators_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_administrators")),
        sa.UniqueConstraint("name", "tenant_id", name=op.f("uq_administrators_name_tenant_id")),
    )
    op.create_index(
        op.f("ix_administrators_tenant_id"), "administrators", ["tenant_id"], unique=False
    )
    op.create_table(
        "configs",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=4096), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_configs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "key", name=op.f("pk_configs")),
    )
    op.create_table(
        "host_counters",
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("http_requests", sa.Integer(), server_default="0", nullable=False),
        sa.Column("auth_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("auth_ok", sa.Integer(), server_default="0", nullable=False),
        sa.Column("nx_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("nx_ok", sa.Integer(), server_default="0", nullable=False),
        sa.Column("short_sessions", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_host_counters_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("host_id", name=op.f("pk_host_counters")),
    )
    op.create_table(
        "host_runtimes",
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("ok_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("usable_ram", sa.Float(), nullable=True),
        sa.Column("usable_cpu", sa.Float(), nullable=True),
        sa.Column("free_ram_mb", sa.Float(), nullable=True),
        sa.Column("idle_cpu", sa.Float(), nullable=True),
        sa.Column("running_vms", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=12), server_default="stopped", nullable=False),
        sa.Column(
            "state_ts", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("blocked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("cmd", sa.String(length=12), nullable=True),
        sa.ForeignKeyConstraint(
            ["cmd"], ["host_cmds.name"], name=op.f("fk_host_runtimes_cmd_host_cmds")
        ),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_host_runtimes_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["state"], ["host_states.name"], name=op.f("fk_host_runtimes_state_host_states")
        ),
        sa.PrimaryKeyConstraint("host_id", name=op.f("pk_host_runtimes")),
    )
    op.create_table(
        "osfs",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("memory", sa.Integer(), server_default="256", nullable=False),
        sa.Column("use_overlay", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("is_application", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("user_storage_size", sa.Integer(), nullable=True),
        sa.Column("osd_id", sa.Integer(), nullable=True),
        sa.Column("creation_admin_id", sa.Integer(), nullable=True),
        sa.Column(
            "creation_date",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("memory > 0", name=op.f("ck_osfs_memory_positive")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_osfs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_osfs")),
        sa.UniqueConstraint("name", "tenant_id", name=op.f("uq_osfs_name_tenant_id")),
    )
    op.create_index(op.f("ix_osfs_tenant_id"), "osfs", ["tenant_id"], unique=False)
    op.create_table(
        "properties_list",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_properties_list_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_properties_list")),
        sa.UniqueConstraint("key", "tenant_id", name=op.f("uq_properties_list_key_tenant_id")),
    )
    op.create_index(
        op.f("ix_properties_list_tenant_id"), "properties_list", ["tenant_id"], unique=False
    )
    op.create_table(
        "roles",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("internal", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("fixed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("creation_admin_id", sa.Integer(), nullable=True),
        sa.Column(
            "creation_date",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_roles_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roles")),
        sa.UniqueConstraint("name", "tenant_id", name=op.f("uq_roles_name_tenant_id")),
    )
    op.create_index(op.f("ix_roles_tenant_id"), "roles", ["tenant_id"], unique=False)
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("password", sa.String(length=255), nullable=True),
        sa.Column("blocked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "language",
            sa.Enum("es", "en", "auto", "default", name="language_enum"),
            server_default="auto",
            nullable=False,
        ),
        sa.Column("creation_admin_id", sa.Integer(), nullable=True),
        sa.Column(
            "creation_date",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_users_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("login", "tenant_id", name=op.f("uq_users_login_tenant_id")),
    )
    op.create_index(op.f("ix_users_tenant_id"), "users", ["tenant_id"], unique=False)
    op.create_table(
        "acl_role_relations",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("acl_id", sa.Integer(), nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.Column("positive", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.ForeignKeyConstraint(
            ["acl_id"],
            ["acls.id"],
            name=op.f("fk_acl_role_relations_acl_id_acls"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["role_id"],
            ["roles.id"],
            name=op.f("fk_acl_role_relations_role_id_roles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acl_role_relations")),
        sa.UniqueConstraint("role_id", "acl_id", name=op.f("uq_acl_role_relations_role_id_acl_id")),
    )
    op.create_index(
        op.f("ix_acl_role_relations_acl_id"), "acl_role_relations", ["acl_id"], unique=False
    )
    op.create_table(
        "api_sessions",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("administrator_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column(
            "created", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "last_used", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.ForeignKeyConstraint(
            ["administrator_id"],
            ["administrators.id"],
            name=op.f("fk_api_sessions_administrator_id_administrators"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_api_sessions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_api_sessions")),
    )
    op.create_index(
        op.f("ix_api_sessions_administrator_id"), "api_sessions", ["administrator_id"], unique=False
    )
    op.create_index(op.f("ix_api_sessions_expires"), "api_sessions", ["expires"], unique=False)
    op.create_table(
        "dis",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("osf_id", sa.Integer(), nullable=False),
        sa.Column("blocked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column(
            "pending_tags",
            sa.ARRAY(sa.String(length=1024)),
            server_default=sa.text("'{}'::varchar[]"),
            nullable=False,
        ),
        sa.Column("creation_admin_id", sa.Integer(), nullable=True),
        sa.Column(
            "creation_date",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["osf_id"], ["osfs.id"], name=op.f("fk_dis_osf_id_osfs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dis")),
        sa.UniqueConstraint("id", "osf_id", name="uq_dis_id_osf_id"),
        sa.UniqueConstraint("osf_id", "version", name=op.f("uq_dis_osf_id_version")),
    )
    op.create_index(op.f("ix_dis_osf_id"), "dis", ["osf_id"], unique=False)
    op.create_table(
        "qvd_object_properties_list",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("property_id", sa.Integer(), nullable=False),
        sa.Column(
            "qvd_object",
            sa.Enum("user", "vm", "host", "osf", "di", name="property_object_enum"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["property_id"],
            ["properties_list.id"],
            name=op.f("fk_qvd_object_properties_list_property_id_properties_list"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qvd_object_properties_list")),
        sa.UniqueConstraint(
            "property_id",
            "qvd_object",
            name=op.f("uq_qvd_object_properties_list_property_id_qvd_object"),
        ),
    )
    op.create_table(
        "role_administrator_relations",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.Column("administrator_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["administrator_id"],
            ["administrators.id"],
            name=op.f("fk_role_administrator_relations_administrator_id_administrators"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["role_id"],
            ["roles.id"],
            name=op.f("fk_role_administrator_relations_role_id_roles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_administrator_relations")),
        sa.UniqueConstraint(
            "administrator_id",
            "role_id",
            name=op.f("uq_role_administrator_relations_administrator_id_role_id"),
        ),
    )
    op.create_index(
        op.f("ix_role_administrator_relations_role_id"),
        "role_administrator_relations",
        ["role_id"],
        unique=False,
    )
    op.create_table(
        "role_role_relations",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("inheritor_id", sa.Integer(), nullable=False),
        sa.Column("inherited_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "inheritor_id <> inherited_id", name=op.f("ck_role_role_relations_not_self")
        ),
        sa.ForeignKeyConstraint(
            ["inherited_id"],
            ["roles.id"],
            name=op.f("fk_role_role_relations_inherited_id_roles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["inheritor_id"],
            ["roles.id"],
            name=op.f("fk_role_role_relations_inheritor_id_roles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_role_relations")),
        sa.UniqueConstraint(
            "inheritor_id",
            "inherited_id",
            name=op.f("uq_role_role_relations_inheritor_id_inherited_id"),
        ),
    )
    op.create_index(
        op.f("ix_role_role_relations_inherited_id"),
        "role_role_relations",
        ["inherited_id"],
        unique=False,
    )
    op.create_table(
        "vms",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("osf_id", sa.Integer(), nullable=False),
        sa.Column("di_tag", sa.String(length=128), server_default="default", nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("storage", sa.String(length=4096), nullable=True),
        sa.Column("creation_admin_id", sa.Integer(), nullable=True),
        sa.Column(
            "creation_date",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["osf_id"], ["osfs.id"], name=op.f("fk_vms_osf_id_osfs"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_vms_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vms")),
        sa.UniqueConstraint("ip", name=op.f("uq_vms_ip")),
        sa.UniqueConstraint("name", "user_id", name=op.f("uq_vms_name_user_id")),
    )
    op.create_index(op.f("ix_vms_osf_id"), "vms", ["osf_id"], unique=False)
    op.create_index(op.f("ix_vms_user_id"), "vms", ["user_id"], unique=False)
    op.create_table(
        "di_properties",
        sa.Column("di_id", sa.Integer(), nullable=False),
        sa.Column("property_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["di_id"], ["dis.id"], name=op.f("fk_di_properties_di_id_dis"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["property_id"],
            ["qvd_object_properties_list.id"],
            name=op.f("fk_di_properties_property_id_qvd_object_properties_list"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("di_id", "property_id", name=op.f("pk_di_properties")),
    )
    op.create_table(
        "di_runtimes",
        sa.Column("di_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "new",
                "generating",
                "fail",
                "uploading",
                "upload_stalled",
                "verifying",
                "ready",
                "published",
                "retired",
                name="di_state_enum",
            ),
            server_default="new",
            nullable=False,
        ),
        sa.Column(
            "state_ts", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("elapsed_time", sa.Integer(), nullable=True),
        sa.Column("auto_publish", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("foreign_id", sa.Integer(), nullable=True),
        sa.Column("expiration_time_soft", sa.Integer(), nullable=True),
        sa.Column("expiration_time_hard", sa.Integer(), nullable=True),
        sa.Column("percentage", sa.Float(), server_default="0", nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["di_id"], ["dis.id"], name=op.f("fk_di_runtimes_di_id_dis"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("di_id", name=op.f("pk_di_runtimes")),
    )
    op.create_table(
        "di_tags",
        sa.Column("id", sa.Integer(), sa.Identity(always=False, start=10000), nullable=False),
        sa.Column("di_id", sa.Integer(), nullable=False),
        sa.Column("osf_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=1024), nullable=False),
        sa.Column("fixed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(
            ["di_id", "osf_id"],
            ["dis.id", "dis.osf_id"],
            name="fk_di_tags_di_osf",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_di_tags")),
        sa.UniqueConstraint("osf_id", "tag", name=op.f("uq_di_tags_osf_id_tag")),
    )
    op.create_index(op.f("ix_di_tags_di_id"), "di_tags", ["di_id"], unique=False)
    op.create_table(
        "host_properties",
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("property_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_host_properties_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["property_id"],
            ["qvd_object_properties_list.id"],
            name=op.f("fk_host_properties_property_id_qvd_object_properties_list"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("host_id", "property_id", name=op.f("pk_host_properties")),
    )
    op.create_table(
        "osf_properties",
        sa.Column("osf_id", sa.Integer(), nullable=False),
        sa.Column("property_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["osf_id"], ["osfs.id"], name=op.f("fk_osf_properties_osf_id_osfs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["property_id"],
            ["qvd_object_properties_list.id"],
            name=op.f("fk_osf_properties_property_id_qvd_object_properties_list"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("osf_id", "property_id", name=op.f("pk_osf_properties")),
    )
    op.create_table(
        "user_properties",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("property_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["property_id"],
            ["qvd_object_properties_list.id"],
            name=op.f("fk_user_properties_property_id_qvd_object_properties_list"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_properties_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "property_id", name=op.f("pk_user_properties")),
    )
    op.create_table(
        "user_tokens",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("vm_id", sa.Integer(), nullable=True),
        sa.Column("expiration", sa.DateTime(timezone=True), nullable=False),
        sa.Column("auth_params_id", sa.Integer(), nullable=True),
        sa.Column("multi_use", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(
            ["auth_params_id"],
            ["user_auth_parameters.id"],
            name=op.f("fk_user_tokens_auth_params_id_user_auth_parameters"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["vm_id"], ["vms.id"], name=op.f("fk_user_tokens_vm_id_vms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_user_tokens")),
    )
    op.create_index(op.f("ix_user_tokens_expiration"), "user_tokens", ["expiration"], unique=False)
    op.create_index(op.f("ix_user_tokens_user_id"), "user_tokens", ["user_id"], unique=False)
    op.create_table(
        "vm_counters",
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("run_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("run_ok", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["vm_id"], ["vms.id"], name=op.f("fk_vm_counters_vm_id_vms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("vm_id", name=op.f("pk_vm_counters")),
    )
    op.create_table(
        "vm_properties",
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("property_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["property_id"],
            ["qvd_object_properties_list.id"],
            name=op.f("fk_vm_properties_property_id_qvd_object_properties_list"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vm_id"], ["vms.id"], name=op.f("fk_vm_properties_vm_id_vms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("vm_id", "property_id", name=op.f("pk_vm_properties")),
    )
    op.create_table(
        "vm_runtimes",
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=True),
        sa.Column("current_osf_id", sa.Integer(), nullable=True),
        sa.Column("current_di_id", sa.Integer(), nullable=True),
        sa.Column("user_ip", sa.String(length=45), nullable=True),
        sa.Column("real_user_id", sa.Integer(), nullable=True),
        sa.Column("vm_state", sa.String(length=12), server_default="stopped", nullable=False),
        sa.Column(
            "vm_state_ts",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("vm_cmd", sa.String(length=12), nullable=True),
        sa.Column("vm_pid", sa.Integer(), nullable=True),
        sa.Column(
            "user_state", sa.String(length=12), server_default="disconnected", nullable=False
        ),
        sa.Column(
            "user_state_ts",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("user_cmd", sa.String(length=12), nullable=True),
        sa.Column("vma_ok_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("l7r_host_id", sa.Integer(), nullable=True),
        sa.Column("l7r_pid", sa.Integer(), nullable=True),
        sa.Column("vm_address", sa.String(length=127), nullable=True),
        sa.Column("vm_vma_port", sa.Integer(), nullable=True),
        sa.Column("vm_x_port", sa.Integer(), nullable=True),
        sa.Column("vm_ssh_port", sa.Integer(), nullable=True),
        sa.Column("vm_vnc_port", sa.Integer(), nullable=True),
        sa.Column("vm_mon_port", sa.Integer(), nullable=True),
        sa.Column("vm_serial_port", sa.Integer(), nullable=True),
        sa.Column("blocked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("vm_expiration_soft", sa.DateTime(timezone=True), nullable=True),
        sa.Column("vm_expiration_hard", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["current_di_id"],
            ["dis.id"],
            name=op.f("fk_vm_runtimes_current_di_id_dis"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["current_osf_id"],
            ["osfs.id"],
            name=op.f("fk_vm_runtimes_current_osf_id_osfs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_vm_runtimes_host_id_hosts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["l7r_host_id"],
            ["hosts.id"],
            name=op.f("fk_vm_runtimes_l7r_host_id_hosts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["real_user_id"],
            ["users.id"],
            name=op.f("fk_vm_runtimes_real_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_cmd"], ["user_cmds.name"], name=op.f("fk_vm_runtimes_user_cmd_user_cmds")
        ),
        sa.ForeignKeyConstraint(
            ["user_state"], ["user_states.name"], name=op.f("fk_vm_runtimes_user_state_user_states")
        ),
        sa.ForeignKeyConstraint(
            ["vm_cmd"], ["vm_cmds.name"], name=op.f("fk_vm_runtimes_vm_cmd_vm_cmds")
        ),
        sa.ForeignKeyConstraint(
            ["vm_id"], ["vms.id"], name=op.f("fk_vm_runtimes_vm_id_vms"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["vm_state"], ["vm_states.name"], name=op.f("fk_vm_runtimes_vm_state_vm_states")
        ),
        sa.PrimaryKeyConstraint("vm_id", name=op.f("pk_vm_runtimes")),
    )
    op.create_index(
        op.f("ix_vm_runtimes_current_di_id"), "vm_runtimes", ["current_di_id"], unique=False
    )
    op.create_index(op.f("ix_vm_runtimes_host_id"), "vm_runtimes", ["host_id"], unique=False)
    op.create_index(
        op.f("ix_vm_runtimes_l7r_host_id"), "vm_runtimes", ["l7r_host_id"], unique=False
    )
    op.create_index(op.f("ix_vm_runtimes_vm_state"), "vm_runtimes", ["vm_state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_vm_runtimes_vm_state"), table_name="vm_runtimes")
    op.drop_index(op.f("ix_vm_runtimes_l7r_host_id"), table_name="vm_runtimes")
    op.drop_index(op.f("ix_vm_runtimes_host_id"), table_name="vm_runtimes")
    op.drop_index(op.f("ix_vm_runtimes_current_di_id"), table_name="vm_runtimes")
    op.drop_table("vm_runtimes")
    op.drop_table("vm_properties")
    op.drop_table("vm_counters")
    op.drop_index(op.f("ix_user_tokens_user_id"), table_name="user_tokens")
    op.drop_index(op.f("ix_user_tokens_expiration"), table_name="user_tokens")
    op.drop_table("user_tokens")
    op.drop_table("user_properties")
    op.drop_table("osf_properties")
    op.drop_table("host_properties")
    op.drop_index(op.f("ix_di_tags_di_id"), table_name="di_tags")
    op.drop_table("di_tags")
    op.drop_table("di_runtimes")
    op.drop_table("di_properties")
    op.drop_index(op.f("ix_vms_user_id"), table_name="vms")
    op.drop_index(op.f("ix_vms_osf_id"), table_name="vms")
    op.drop_table("vms")
    op.drop_index(op.f("ix_role_role_relations_inherited_id"), table_name="role_role_relations")
    op.drop_table("role_role_relations")
    op.drop_index(
        op.f("ix_role_administrator_relations_role_id"), table_name="role_administrator_relations"
    )
    op.drop_table("role_administrator_relations")
    op.drop_table("qvd_object_properties_list")
    op.drop_index(op.f("ix_dis_osf_id"), table_name="dis")
    op.drop_table("dis")
    op.drop_index(op.f("ix_api_sessions_expires"), table_name="api_sessions")
    op.drop_index(op.f("ix_api_sessions_administrator_id"), table_name="api_sessions")
    op.drop_table("api_sessions")
    op.drop_index(op.f("ix_acl_role_relations_acl_id"), table_name="acl_role_relations")
    op.drop_table("acl_role_relations")
    op.drop_index(op.f("ix_users_tenant_id"), table_name="users")
    op.drop_table("users")
    op.drop_index(op.f("ix_roles_tenant_id"), table_name="roles")
    op.drop_table("roles")
    op.drop_index(op.f("ix_properties_list_tenant_id"), table_name="properties_list")
    op.drop_table("properties_list")
    op.drop_index(op.f("ix_osfs_tenant_id"), table_name="osfs")
    op.drop_table("osfs")
    op.drop_table("host_runtimes")
    op.drop_table("host_counters")
    op.drop_table("configs")
    op.drop_index(op.f("ix_administrators_tenant_id"), table_name="administrators")
    op.drop_table("administrators")
    op.drop_table("vm_states")
    op.drop_table("vm_cmds")
    op.drop_table("user_states")
    op.drop_table("user_cmds")
    op.drop_table("user_auth_parameters")
    op.drop_table("tenants")
    op.drop_table("ssl_configs")
    op.drop_table("hosts")
    op.drop_table("host_states")
    op.drop_table("host_cmds")
    op.drop_index(op.f("ix_audit_log_time"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_tenant_id"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_administrator_id"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("acls")
    for enum_name in (
        "property_object_enum",
        "log_qvd_object_enum",
        "log_type_of_action_enum",
        "di_state_enum",
        "language_enum",
    ):
        op.execute(f"DROP TYPE IF EXISTS {enum_name}")
