"""Which callback URLs are accepted: https only unless http is allowed, and no private, loopback,
link-local, multicast or unspecified address unless its host or network is allow-listed."""

from __future__ import annotations

import pytest

from api.delivery.addresses import AllowList, check_callback_url
from shared.config import Settings
from shared.errors import CallbackRefused

NONE = AllowList.parse([])


def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


def test_a_public_https_url_is_pinned_to_its_resolved_address() -> None:
    target = check_callback_url("https://hooks.example.com/in?x=1", allow_http=False, allowed=NONE,
                                resolver=resolver("93.184.216.34"))

    assert (target.host, target.port, target.address) == ("hooks.example.com", 443, "93.184.216.34")
    assert target.pinned_url == "https://93.184.216.34:443/in?x=1"
    assert target.host_header == "hooks.example.com"


@pytest.mark.parametrize("url", ["http://hooks.example.com/", "ftp://hooks.example.com/", "hooks.example.com/x",
                                 "https:///nohost", "https://user:pw@hooks.example.com/", "https://h:99999/"])
def test_other_schemes_and_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(CallbackRefused):
        check_callback_url(url, allow_http=False, allowed=NONE, resolver=resolver("93.184.216.34"))


def test_http_is_accepted_when_allowed() -> None:
    target = check_callback_url("http://hooks.example.com:8080/", allow_http=True, allowed=NONE,
                                resolver=resolver("93.184.216.34"))

    assert target.pinned_url == "http://93.184.216.34:8080/"
    assert target.host_header == "hooks.example.com:8080"


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.1", "private"), ("169.254.169.254", "link-local"),
    ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"), ("::1", "loopback"), ("fe80::1", "link-local"),
    ("fd00::1", "private"), ("::ffff:127.0.0.1", "loopback"),
])
def test_private_and_special_addresses_are_refused_with_their_kind(address: str, kind: str) -> None:
    with pytest.raises(CallbackRefused, match=f"the {kind} address"):
        check_callback_url("https://hooks.example.com/", allow_http=False, allowed=NONE, resolver=resolver(address))


def test_a_host_with_one_private_address_among_public_ones_is_refused() -> None:
    with pytest.raises(CallbackRefused, match="private"):
        check_callback_url("https://hooks.example.com/", allow_http=False, allowed=NONE,
                           resolver=resolver("93.184.216.34", "10.0.0.5"))


def test_address_literals_are_checked_without_resolving() -> None:
    with pytest.raises(CallbackRefused, match="loopback"):
        check_callback_url("https://127.0.0.1:9000/", allow_http=False, allowed=NONE, resolver=resolver())
    target = check_callback_url("https://[2606:4700::1111]/", allow_http=False, allowed=NONE, resolver=resolver())
    assert target.pinned_url == "https://[2606:4700::1111]:443/"


def test_allow_listed_hosts_and_networks_may_be_private() -> None:
    allowed = AllowList.parse(["receiver.internal", "10.0.0.0/8", "127.0.0.1"])

    assert check_callback_url("https://receiver.internal/", allow_http=False, allowed=allowed,
                              resolver=resolver("192.168.1.1")).address == "192.168.1.1"
    assert check_callback_url("https://other.internal/", allow_http=False, allowed=allowed,
                              resolver=resolver("10.9.9.9")).address == "10.9.9.9"
    assert check_callback_url("https://127.0.0.1:8443/", allow_http=False, allowed=allowed).address == "127.0.0.1"
    with pytest.raises(CallbackRefused):
        check_callback_url("https://other.internal/", allow_http=False, allowed=allowed,
                           resolver=resolver("192.168.1.1"))


def test_a_host_that_does_not_resolve_is_refused() -> None:
    def fails(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(CallbackRefused, match="does not resolve"):
        check_callback_url("https://nowhere.invalid/", allow_http=False, allowed=NONE, resolver=fails)


def test_settings_parse_the_allow_list_and_refuse_http_and_short_leases_where_they_do_harm() -> None:
    settings = Settings(webhook_allowed_hosts="127.0.0.1, receiver.internal ,10.0.0.0/8")
    assert settings.webhook_allowed_hosts == ["127.0.0.1", "receiver.internal", "10.0.0.0/8"]
    with pytest.raises(ValueError, match="ALLOW_HTTP"):
        Settings(environment="production", webhook_allow_http=True)
    with pytest.raises(ValueError, match="LEASE_S"):
        Settings(webhook_lease_s=5, webhook_attempt_timeout_s=10)
