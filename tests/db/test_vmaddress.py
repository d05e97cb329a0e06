"""The first free VM address, from ``vm.network.ip.start`` up to the broadcast address."""

from __future__ import annotations

from sqlalchemy import Engine, text

from qvd.db.vmaddress import first_free_ip, free_vm_ip


def test_the_lowest_unused_address_from_the_start() -> None:
    assert first_free_ip("10.0.0.100", "255.255.0.0", set()) == "10.0.0.100"
    assert first_free_ip("10.0.0.100", "16", {"10.0.0.100", "10.0.0.102"}) == "10.0.0.101"
    assert first_free_ip("10.0.0.253", "24", {"10.0.0.253"}) == "10.0.0.254"


def test_none_when_only_the_broadcast_address_is_left() -> None:
    assert first_free_ip("10.0.0.253", "255.255.255.0", {"10.0.0.253", "10.0.0.254"}) is None


def test_addresses_of_existing_vms_are_taken(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tenants (id, name) VALUES (500, 'acme');"
                "INSERT INTO users (id, tenant_id, login) VALUES (600, 500, 'ana');"
                "INSERT INTO osfs (id, tenant_id, name) VALUES (700, 500, 'desk');"
                "INSERT INTO vms (name, user_id, osf_id, ip) VALUES "
                "('a', 600, 700, '10.0.0.100'), ('b', 600, 700, '10.0.0.101'), "
                "('c', 600, 700, NULL)"
            )
        )
        assert free_vm_ip(conn, "10.0.0.100", "16") == "10.0.0.102"
        assert free_vm_ip(conn, "10.0.0.50", "16") == "10.0.0.50"
