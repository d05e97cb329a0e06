"""Functions, views and triggers: runtime rows, tag ownership, role inheritance, NOTIFY.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 21:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_UPGRADE = r"""
-- Runtime and counter rows exist exactly when their parent row does.
CREATE FUNCTION qvd_create_runtime_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'vms' THEN
    INSERT INTO vm_runtimes (vm_id) VALUES (NEW.id);
    INSERT INTO vm_counters (vm_id) VALUES (NEW.id);
  ELSIF TG_TABLE_NAME = 'hosts' THEN
    INSERT INTO host_runtimes (host_id) VALUES (NEW.id);
    INSERT INTO host_counters (host_id) VALUES (NEW.id);
  ELSIF TG_TABLE_NAME = 'dis' THEN
    INSERT INTO di_runtimes (di_id) VALUES (NEW.id);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER vms_runtime_rows AFTER INSERT ON vms
  FOR EACH ROW EXECUTE FUNCTION qvd_create_runtime_rows();
CREATE TRIGGER hosts_runtime_rows AFTER INSERT ON hosts
  FOR EACH ROW EXECUTE FUNCTION qvd_create_runtime_rows();
CREATE TRIGGER dis_runtime_rows AFTER INSERT ON dis
  FOR EACH ROW EXECUTE FUNCTION qvd_create_runtime_rows();

-- A tag belongs to the OSF of its DI: filled here, checked by the composite FK,
-- unique per OSF by uq_di_tags_osf_id_tag.
CREATE FUNCTION qvd_di_tag_osf() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.osf_id := (SELECT osf_id FROM dis WHERE id = NEW.di_id);
  RETURN NEW;
END $$;
CREATE TRIGGER di_tags_osf BEFORE INSERT OR UPDATE OF di_id ON di_tags
  FOR EACH ROW EXECUTE FUNCTION qvd_di_tag_osf();

-- Role inheritance must stay acyclic.
CREATE FUNCTION qvd_role_inheritance_acyclic() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (
    WITH RECURSIVE below(id) AS (
      SELECT NEW.inherited_id
      UNION
      SELECT r.inherited_id FROM role_role_relations r JOIN below b ON r.inheritor_id = b.id
    )
    SELECT 1 FROM below WHERE id = NEW.inheritor_id
  ) THEN
    RAISE EXCEPTION 'role % cannot inherit role %: that would make an inheritance cycle',
      NEW.inheritor_id, NEW.inherited_id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER role_role_relations_acyclic BEFORE INSERT OR UPDATE ON role_role_relations
  FOR EACH ROW EXECUTE FUNCTION qvd_role_inheritance_acyclic();

-- Effective ACLs of a role: its own positive ACLs plus those of the roles it inherits,
-- minus the ACLs it denies itself (positive = false). A deny on a role beats what it
-- inherits; a role above it may grant the ACL again through another path.
CREATE FUNCTION qvd_role_acl_ids(p_role integer, p_seen integer[] DEFAULT '{}')
RETURNS SETOF integer LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF p_role = ANY (p_seen) THEN
    RETURN;
  END IF;
  RETURN QUERY
    SELECT DISTINCT s.acl_id FROM (
      SELECT a.acl_id FROM acl_role_relations a WHERE a.role_id = p_role AND a.positive
      UNION
      SELECT qvd_role_acl_ids(r.inherited_id, p_seen || p_role)
        FROM role_role_relations r WHERE r.inheritor_id = p_role
    ) s(acl_id)
    WHERE s.acl_id NOT IN (
      SELECT d.acl_id FROM acl_role_relations d WHERE d.role_id = p_role AND NOT d.positive
    );
END $$;

CREATE VIEW role_effective_acls AS
  SELECT r.id AS role_id, a.id AS acl_id, a.name AS acl_name
    FROM roles r CROSS JOIN LATERAL qvd_role_acl_ids(r.id) x(acl_id)
    JOIN acls a ON a.id = x.acl_id;

CREATE VIEW administrator_effective_acls AS
  SELECT DISTINCT ra.administrator_id, a.id AS acl_id, a.name AS acl_name
    FROM role_administrator_relations ra
    CROSS JOIN LATERAL qvd_role_acl_ids(ra.role_id) x(acl_id)
    JOIN acls a ON a.id = x.acl_id;

-- ---------------------------------------------------------------- notifications
CREATE FUNCTION qvd_vm_tenant(p_vm integer) RETURNS integer LANGUAGE sql STABLE AS $$
  SELECT u.tenant_id FROM vms v JOIN users u ON u.id = v.user_id WHERE v.id = p_vm
$$;

CREATE FUNCTION qvd_notify_vm_runtime() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  is_insert boolean := TG_OP = 'INSERT';
BEGIN
  IF NEW.vm_cmd IS NOT NULL AND NEW.host_id IS NOT NULL AND (is_insert
      OR OLD.vm_cmd IS DISTINCT FROM NEW.vm_cmd OR OLD.host_id IS DISTINCT FROM NEW.host_id) THEN
    PERFORM pg_notify('qvd_cmd_for_vm_on_host' || NEW.host_id,
      json_build_object('vm_id', NEW.vm_id, 'cmd', NEW.vm_cmd)::text);
  END IF;
  IF NEW.user_cmd IS NOT NULL AND NEW.l7r_host_id IS NOT NULL AND (is_insert
      OR OLD.user_cmd IS DISTINCT FROM NEW.user_cmd
      OR OLD.l7r_host_id IS DISTINCT FROM NEW.l7r_host_id) THEN
    PERFORM pg_notify('qvd_cmd_for_user_on_host' || NEW.l7r_host_id,
      json_build_object('vm_id', NEW.vm_id, 'cmd', NEW.user_cmd)::text);
  END IF;
  IF NOT is_insert AND (OLD.vm_state IS DISTINCT FROM NEW.vm_state
      OR OLD.user_state IS DISTINCT FROM NEW.user_state
      OR OLD.host_id IS DISTINCT FROM NEW.host_id
      OR OLD.vm_cmd IS DISTINCT FROM NEW.vm_cmd
      OR OLD.vm_expiration_soft IS DISTINCT FROM NEW.vm_expiration_soft
      OR OLD.vm_expiration_hard IS DISTINCT FROM NEW.vm_expiration_hard) THEN
    PERFORM pg_notify('vm_changed', json_build_object(
      'vm_id', NEW.vm_id, 'tenant_id', qvd_vm_tenant(NEW.vm_id), 'vm_state', NEW.vm_state,
      'user_state', NEW.user_state, 'host_id', NEW.host_id, 'vm_cmd', NEW.vm_cmd)::text);
  END IF;
  IF NOT is_insert AND OLD.blocked IS DISTINCT FROM NEW.blocked THEN
    PERFORM pg_notify('vm_blocked_or_unblocked', json_build_object(
      'vm_id', NEW.vm_id, 'tenant_id', qvd_vm_tenant(NEW.vm_id), 'blocked', NEW.blocked)::text);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER vm_runtimes_notify AFTER INSERT OR UPDATE ON vm_runtimes
  FOR EACH ROW EXECUTE FUNCTION qvd_notify_vm_runtime();

CREATE FUNCTION qvd_notify_host_runtime() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.cmd IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.cmd IS DISTINCT FROM NEW.cmd) THEN
    PERFORM pg_notify('qvd_cmd_for_host' || NEW.host_id,
      json_build_object('host_id', NEW.host_id, 'cmd', NEW.cmd)::text);
  END IF;
  IF TG_OP = 'UPDATE' AND (OLD.state IS DISTINCT FROM NEW.state
      OR OLD.blocked IS DISTINCT FROM NEW.blocked) THEN
    PERFORM pg_notify('host_changed', json_build_object(
      'host_id', NEW.host_id, 'state', NEW.state, 'blocked', NEW.blocked)::text);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER host_runtimes_notify AFTER INSERT OR UPDATE ON host_runtimes
  FOR EACH ROW EXECUTE FUNCTION qvd_notify_host_runtime();

CREATE FUNCTION qvd_notify_config() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  r configs;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  PERFORM pg_notify('qvd_config_changed', json_build_object(
    'tenant_id', r.tenant_id, 'key', r.key, 'op', lower(TG_OP))::text);
  RETURN NULL;
END $$;
CREATE TRIGGER configs_notify AFTER INSERT OR UPDATE OR DELETE ON configs
  FOR EACH ROW EXECUTE FUNCTION qvd_notify_config();

CREATE FUNCTION qvd_notify_ssl_config() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  k text;
BEGIN
  IF TG_OP = 'DELETE' THEN k := OLD.key; ELSE k := NEW.key; END IF;
  PERFORM pg_notify('qvd_ssl_config_changed',
    json_build_object('key', k, 'op', lower(TG_OP))::text);
  RETURN NULL;
END $$;
CREATE TRIGGER ssl_configs_notify AFTER INSERT OR UPDATE OR DELETE ON ssl_configs
  FOR EACH ROW EXECUTE FUNCTION qvd_notify_ssl_config();

-- <object>_created / _changed / _deleted for the objects admins manage.
CREATE FUNCTION qvd_notify_object() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  obj text := TG_ARGV[0];
  row_data json;
  tenant integer;
  verb text;
  row_id integer;
BEGIN
  IF TG_OP = 'DELETE' THEN row_data := row_to_json(OLD); ELSE row_data := row_to_json(NEW); END IF;
  row_id := (row_data->>'id')::integer;
  verb := CASE TG_OP WHEN 'INSERT' THEN 'created' WHEN 'UPDATE' THEN 'changed' ELSE 'deleted' END;
  tenant := CASE TG_TABLE_NAME
    WHEN 'tenants' THEN row_id
    WHEN 'hosts' THEN NULL
    WHEN 'vms' THEN (SELECT u.tenant_id FROM users u WHERE u.id = (row_data->>'user_id')::integer)
    WHEN 'dis' THEN (SELECT o.tenant_id FROM osfs o WHERE o.id = (row_data->>'osf_id')::integer)
    ELSE (row_data->>'tenant_id')::integer
  END;
  PERFORM pg_notify(obj || '_' || verb, json_build_object('id', row_id, 'tenant_id', tenant)::text);
  IF TG_TABLE_NAME = 'users' AND TG_OP = 'UPDATE' THEN
    -- nested: plpgsql does not short-circuit, and only users have "blocked"
    IF (row_to_json(OLD)->>'blocked') IS DISTINCT FROM (row_data->>'blocked') THEN
      PERFORM pg_notify('user_blocked_or_unblocked', json_build_object(
        'id', row_id, 'tenant_id', tenant, 'blocked', (row_data->>'blocked')::boolean)::text);
    END IF;
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION qvd_notify_di_runtime() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM NEW.state
      OR OLD.percentage IS DISTINCT FROM NEW.percentage THEN
    PERFORM pg_notify('di_runtimes_changed', json_build_object(
      'di_id', NEW.di_id, 'state', NEW.state, 'tenant_id',
      (SELECT o.tenant_id FROM dis d JOIN osfs o ON o.id = d.osf_id WHERE d.id = NEW.di_id))::text);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER di_runtimes_notify AFTER INSERT OR UPDATE ON di_runtimes
  FOR EACH ROW EXECUTE FUNCTION qvd_notify_di_runtime();

CREATE FUNCTION qvd_notify_di_tag() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  r di_tags;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  PERFORM pg_notify('di_tags_changed', json_build_object(
    'di_id', r.di_id, 'osf_id', r.osf_id, 'tag', r.tag, 'op', lower(TG_OP))::text);
  RETURN NULL;
END $$;
CREATE TRIGGER di_tags_notify AFTER INSERT OR UPDATE OR DELETE ON di_tags
  FOR EACH ROW EXECUTE FUNCTION qvd_notify_di_tag();
"""

_OBJECT_NOUN = {
    "users": "user",
    "vms": "vm",
    "hosts": "host",
    "osfs": "osf",
    "dis": "di",
    "tenants": "tenant",
    "administrators": "administrator",
    "roles": "role",
}


def upgrade() -> None:
    op.execute(_UPGRADE)
    for table, noun in _OBJECT_NOUN.items():
        op.execute(
            f"CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION qvd_notify_object('{noun}')"
        )


def downgrade() -> None:
    for table in _OBJECT_NOUN:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_notify ON {table}")
    op.execute(
        """
        DROP TRIGGER IF EXISTS di_tags_notify ON di_tags;
        DROP TRIGGER IF EXISTS di_runtimes_notify ON di_runtimes;
        DROP TRIGGER IF EXISTS ssl_configs_notify ON ssl_configs;
        DROP TRIGGER IF EXISTS configs_notify ON configs;
        DROP TRIGGER IF EXISTS host_runtimes_notify ON host_runtimes;
        DROP TRIGGER IF EXISTS vm_runtimes_notify ON vm_runtimes;
        DROP TRIGGER IF EXISTS role_role_relations_acyclic ON role_role_relations;
        DROP TRIGGER IF EXISTS di_tags_osf ON di_tags;
        DROP TRIGGER IF EXISTS dis_runtime_rows ON dis;
        DROP TRIGGER IF EXISTS hosts_runtime_rows ON hosts;
        DROP TRIGGER IF EXISTS vms_runtime_rows ON vms;
        DROP VIEW IF EXISTS administrator_effective_acls;
        DROP VIEW IF EXISTS role_effective_acls;
        DROP FUNCTION IF EXISTS qvd_notify_di_tag();
        DROP FUNCTION IF EXISTS qvd_notify_di_runtime();
        DROP FUNCTION IF EXISTS qvd_notify_object();
        DROP FUNCTION IF EXISTS qvd_notify_ssl_config();
        DROP FUNCTION IF EXISTS qvd_notify_config();
        DROP FUNCTION IF EXISTS qvd_notify_host_runtime();
        DROP FUNCTION IF EXISTS qvd_notify_vm_runtime();
        DROP FUNCTION IF EXISTS qvd_vm_tenant(integer);
        DROP FUNCTION IF EXISTS qvd_role_acl_ids(integer, integer[]);
        DROP FUNCTION IF EXISTS qvd_role_inheritance_acyclic();
        DROP FUNCTION IF EXISTS qvd_di_tag_osf();
        DROP FUNCTION IF EXISTS qvd_create_runtime_rows();
        """
    )
