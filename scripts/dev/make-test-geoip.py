#!/usr/bin/env python3
"""Regenerates common/tests/data/test-country.mmdb, the small GeoIP2-Country-shaped database
the enrichment tests read through the maxminddb crate.

    python3 -m venv /tmp/mmdb && /tmp/mmdb/bin/pip install mmdb-writer netaddr
    /tmp/mmdb/bin/python scripts/dev/make-test-geoip.py

The networks are documentation and test ranges (RFC 5737 / RFC 3849) plus one ordinary
range, each mapped to a fixed country, so tests can assert exact lookups.
"""
from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

NETWORKS = {
    "192.0.2.0/24": "DE",  # TEST-NET-1
    "198.51.100.0/24": "FR",  # TEST-NET-2
    "203.0.113.0/24": "JP",  # TEST-NET-3
    "81.2.69.0/24": "GB",
    "2001:db8::/32": "NL",  # IPv6 documentation prefix
}

out = Path(__file__).resolve().parents[2] / "common" / "tests" / "data" / "test-country.mmdb"
writer = MMDBWriter(ip_version=6, database_type="GeoIP2-Country", languages=["en"],
                    description="linkgate test fixture", ipv4_compatible=True)
for network, iso in NETWORKS.items():
    writer.insert_network(IPSet([network]), {"country": {"iso_code": iso, "names": {"en": iso}}})
writer.to_db_file(str(out))
print(f"wrote {out}")
