"""The throwaway slapd (``tests.l7r.ldap_fixture``) for the LDAP, auto and TOTP tests."""

from tests.l7r.ldap_fixture import slapd

__all__ = ["slapd"]  # the fixture, imported for pytest
