"""GeoIP: local ranges, the bundled DB-IP data, user-supplied .mmdb directories, the CLI."""

from __future__ import annotations

import ipaddress
import json
import random
import shutil
from pathlib import Path

import maxminddb
import pytest

from dronewatch.cli.app import main
from dronewatch.exceptions import GeoIPError
from dronewatch.geoip.local import LocalNets, is_local_name, parse_address
from dronewatch.geoip.maxmind import (
    BUNDLED_ASN,
    BUNDLED_COUNTRY,
    MaxMindResolver,
    bundled_data_dir,
    bundled_sources,
)
from dronewatch.geoip.null import NullResolver


@pytest.fixture(scope="module")
def bundled() -> MaxMindResolver:
    return MaxMindResolver.bundled()


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("10.1.2.3", "private"),
        ("172.31.255.255", "private"),
        ("192.168.2.1", "private"),
        ("100.64.0.1", "cgnat"),
        ("127.0.0.1", "loopback"),
        ("169.254.10.10", "link-local"),
        ("224.0.0.251", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd00::5", "ula"),
        ("ff02::fb", "multicast"),
        ("::ffff:192.168.1.1", "private"),
    ],
)
def test_local_reasons(ip: str, reason: str) -> None:
    """Every built-in local range answers with its reason, IPv4-mapped IPv6 included."""
    assert LocalNets().reason(ip) == reason


@pytest.mark.parametrize(
    "ip", ["203.0.113.5", "198.51.100.1", "192.0.2.1", "198.18.0.1", "2001:db8::1", "8.8.8.8"]
)
def test_documentation_and_benchmark_ranges_are_not_local(ip: str) -> None:
    """Ranges ipaddress calls private but that are routed off the device count as public."""
    assert LocalNets().reason(ip) is None


def test_configured_and_drone_link_subnets_win() -> None:
    """Policy subnets are local and their label is reported before the built-in one."""
    nets = LocalNets(["198.51.100.0/24"], drone_link=["192.168.2.0/24"])
    assert nets.reason("198.51.100.7") == "configured"
    assert nets.reason("192.168.2.20") == "drone-link"
    assert nets.reason("192.168.3.1") == "private"
    assert nets.subnets == (("192.168.2.0/24", "drone-link"), ("198.51.100.0/24", "configured"))


def test_bad_subnet_is_a_geoip_error() -> None:
    """Text that is not a network fails with a message naming it."""
    with pytest.raises(GeoIPError, match="10.0.0.0/33"):
        LocalNets(["10.0.0.0/33"])


def test_packed_input_of_wrong_length_is_an_error() -> None:
    """A packed address must have 4 or 16 bytes."""
    with pytest.raises(GeoIPError, match="5-byte"):
        LocalNets().reason(b"\x01\x02\x03\x04\x05")


def test_parse_address_unwraps_nat64() -> None:
    """A NAT64 address is the IPv4 address it carries."""
    assert str(parse_address("64:ff9b::808:808")) == "8.8.8.8"


def test_bundled_country_and_asn(bundled: MaxMindResolver) -> None:
    """A well-known public resolver address gets its country, AS number and organisation."""
    info = bundled.lookup("8.8.8.8")
    assert (info.scope, info.country_code, info.country_name) == ("public", "US", "United States")
    assert (info.asn, info.as_org, info.continent) == (15169, "Google LLC", "NA")


def test_bundled_lookup_of_packed_ipv6(bundled: MaxMindResolver) -> None:
    """Packed IPv6 input is looked up in the same databases."""
    info = bundled.lookup(parse_address("2a00:1450:4001::1").packed)
    assert (info.country_code, info.asn) == ("DE", 15169)


def test_local_address_is_not_looked_up(bundled: MaxMindResolver) -> None:
    """A private address is local, with no country or ASN attached."""
    info = bundled.lookup("192.168.2.1")
    assert (info.scope, info.local_reason, info.country_code, info.asn) == (
        "local",
        "private",
        None,
        None,
    )


def test_non_address_is_unknown(bundled: MaxMindResolver) -> None:
    """Input that is not an address is scope unknown, not an exception."""
    assert bundled.lookup("not-an-ip").scope == "unknown"
    assert bundled.lookup(b"\x00").scope == "unknown"


def test_the_c_reader_answers_as_the_python_reader() -> None:
    """The databases are read by maxminddb's C reader where the package has it (five times as
    fast as its pure-Python reader); both give every address the same answer."""
    extension = pytest.importorskip("maxminddb.extension")
    resolver = MaxMindResolver.bundled()
    readers = (resolver._geo, resolver._asn)
    for reader in readers:
        assert isinstance(reader, extension.Reader)
    names = (BUNDLED_COUNTRY, BUNDLED_ASN)
    rng = random.Random(7)
    addresses = [rng.randbytes(4) for _ in range(300)] + [rng.randbytes(16) for _ in range(100)]
    data = bundled_data_dir()
    pure = [maxminddb.open_database(str(data / name), maxminddb.MODE_MMAP) for name in names]
    for packed in addresses:
        addr = ipaddress.ip_address(packed)
        for c_reader, py_reader in zip(readers, pure, strict=True):
            assert c_reader is not None
            try:
                want = py_reader.get(addr)
            except ValueError:
                with pytest.raises(ValueError):
                    c_reader.get(addr)
                continue
            assert c_reader.get(addr) == want


def test_repeated_lookups_are_cached(bundled: MaxMindResolver) -> None:
    """The second lookup of an address returns the very same answer object."""
    assert bundled.lookup("1.1.1.1") is bundled.lookup("1.1.1.1")


def test_bundled_sources_name_the_licence() -> None:
    """SOURCES.json records the CC BY 4.0 licence and DB-IP attribution of the bundled data."""
    sources = bundled_sources()
    licences = {db["licence"] for db in sources["databases"]}
    assert licences == {"CC-BY-4.0"}
    assert "db-ip.com" in sources["notice"]


def test_from_dir_picks_country_and_asn(tmp_path: Path) -> None:
    """A directory of .mmdb files is sorted into country and ASN databases by their metadata."""
    for name in (BUNDLED_COUNTRY, BUNDLED_ASN):
        shutil.copy(bundled_data_dir() / name, tmp_path / f"copy-{name}")
    resolver = MaxMindResolver.from_dir(tmp_path)
    assert sorted(db.kind for db in resolver.databases) == ["asn", "country"]
    assert resolver.lookup("8.8.8.8").asn == 15169


def test_from_dir_without_databases(tmp_path: Path) -> None:
    """An empty directory is an error that names it."""
    with pytest.raises(GeoIPError, match="no country, city or ASN"):
        MaxMindResolver.from_dir(tmp_path)


def test_from_dir_missing(tmp_path: Path) -> None:
    """A directory that does not exist is an error, not a traceback."""
    with pytest.raises(GeoIPError, match="not a directory"):
        MaxMindResolver.from_dir(tmp_path / "nope")


def test_corrupt_database_is_an_error(tmp_path: Path) -> None:
    """A file that is not a MaxMind database fails with its path in the message."""
    bad = tmp_path / "GeoLite2-Country.mmdb"
    bad.write_bytes(b"not a database at all" * 10)
    with pytest.raises(GeoIPError, match="not a MaxMind database"):
        MaxMindResolver.from_dir(tmp_path)


def test_asn_file_given_as_country_is_refused() -> None:
    """Passing an ASN database where a country one is expected is refused."""
    with pytest.raises(GeoIPError, match="ASN database"):
        MaxMindResolver(country=bundled_data_dir() / BUNDLED_ASN)


def test_null_resolver_knows_scope_only() -> None:
    """Without databases, local and public are still told apart."""
    r = NullResolver()
    assert r.lookup("10.0.0.1").local_reason == "private"
    assert (r.lookup("8.8.8.8").scope, r.lookup("8.8.8.8").asn) == ("public", None)
    assert r.lookup("x").scope == "unknown"


def test_cli_lookup_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`geoip lookup --json` prints one object per address with its facts."""
    assert main(["geoip", "lookup", "--json", "8.8.8.8", "10.0.0.1"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0] == {
        "ip": "8.8.8.8",
        "scope": "public",
        "country_code": "US",
        "country_name": "United States",
        "continent": "NA",
        "asn": 15169,
        "as_org": "Google LLC",
    }
    assert lines[1] == {"ip": "10.0.0.1", "scope": "local", "local_reason": "private"}


def test_cli_lookup_bad_address_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A non-address is reported in words and makes the exit code 2."""
    assert main(["geoip", "lookup", "banana"]) == 2
    assert "banana: not an IP address" in capsys.readouterr().out


def test_cli_info_shows_attribution(capsys: pytest.CaptureFixture[str]) -> None:
    """`geoip info` lists both bundled databases and the DB-IP attribution."""
    assert main(["geoip", "info"]) == 0
    out = capsys.readouterr().out
    assert "DBIP-Country-Lite" in out and "ip-location-db-ASN" in out
    assert "IP Geolocation by DB-IP" in out


def test_cli_bad_geoip_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --geoip-dir with no databases ends with exit 2 and a one-line message."""
    assert main(["geoip", "lookup", "--geoip-dir", str(tmp_path), "8.8.8.8"]) == 2
    assert "no country, city or ASN" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "local"),
    [
        ("printer", True),
        ("nas.lan", True),
        ("Living-Room.local.", True),
        ("router.home.arpa", True),
        ("db.corp", True),
        ("1.0.168.192.in-addr.arpa", True),
        ("168.192.in-addr.arpa", True),
        (ipaddress.ip_address("fe80::1").reverse_pointer, True),
        ("8.8.8.8.in-addr.arpa", False),
        (ipaddress.ip_address("2001:4860::8888").reverse_pointer, False),
        ("www.google.com", False),
        ("local.example.com", False),
        ("300.1.1.1.in-addr.arpa", False),
    ],
)
def test_local_names(name: str, local: bool) -> None:
    """Names the local network answers (one label, local zones, reverse names of local
    addresses) are local; a lookup of any other is an attempt to reach off the device."""
    assert is_local_name(name) is local
