"""A Prometheus-like scraper of a node's ``/metrics`` over TLS (what the tests of
``qvd.node.metrics`` read), and the parsed samples."""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "scrape"]


@dataclass(frozen=True)
class Scrape:
    status: int
    body: str
    headers: dict[str, str]

    def families(self) -> set[str]:
        return {f.name for f in text_string_to_metric_families(self.body)}

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with ``labels`` (a subset); fails when absent."""
        for family in text_string_to_metric_families(self.body):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        raise AssertionError(f"no sample {name}{labels} in the scrape")


def scrape(port: int, token: str | None = None, path: str = "/metrics") -> Scrape:
    """GET ``path`` from 127.0.0.1:``port`` over TLS (the node's certificate is
    self-signed: not verified here), with ``token`` as a bearer token if given."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=15)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read().decode()
        return Scrape(response.status, body, {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()
