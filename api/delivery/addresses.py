"""Which callback URLs the gateway may POST to, checked at submit and again before each attempt
(DNS can change in between): https only (http with ASYNCINFER_WEBHOOK_ALLOW_HTTP), and a host whose
every address is public unless the host or its network is allow-listed. The attempt then connects
to the address checked here, so a second DNS answer cannot send it elsewhere."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.config import Settings
from shared.errors import CallbackRefused

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class Target:
    """Where one attempt connects: `address` (pinned), with `host` for the Host header and TLS."""

    url: str
    scheme: str
    host: str
    port: int
    address: str
    path: str  # with the query

    @property
    def pinned_url(self) -> str:
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{literal}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        default = {"https": 443, "http": 80}[self.scheme]
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


@dataclass(frozen=True)
class AllowList:
    names: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, entries: Sequence[str]) -> AllowList:
        names, networks = set(), []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.lower().rstrip("."))
        return cls(frozenset(names), tuple(networks))

    def allows(self, host: str, address: IpAddress) -> bool:
        return host in self.names or any(address in network for network in self.networks)


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, for a TCP connection."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def forbidden_kind(address: IpAddress) -> str | None:
    """Why a callback may not reach `address` unless allow-listed; None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind, flag in (("loopback", address.is_loopback), ("unspecified", address.is_unspecified),
                       ("link-local", address.is_link_local), ("multicast", address.is_multicast),
                       ("private", address.is_private), ("reserved", address.is_reserved)):
        if flag:
            return kind
    return None


def check_callback_url(url: str, *, allow_http: bool, allowed: AllowList, resolver: Resolver = resolve) -> Target:
    """The target of `url`, or CallbackRefused (422) saying why it is not one."""
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"callback_url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise CallbackRefused(f"callback_url is not a URL: {e}") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise CallbackRefused(f"callback_url must be an {' or '.join(schemes)} URL, not {parts.scheme or 'schemeless'}")
    if not parts.hostname:
        raise CallbackRefused("callback_url has no host")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("callback_url must not carry credentials; deliveries are signed instead")
    host = parts.hostname.lower().rstrip(".")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(found.split("%", 1)[0]) for found in resolver(host, port)]
        except (OSError, UnicodeError) as e:
            raise CallbackRefused(f"callback_url's host {host} does not resolve: {e}") from None
    if not addresses:
        raise CallbackRefused(f"callback_url's host {host} has no address")
    for address in addresses:
        kind = forbidden_kind(address)
        if kind is not None and not allowed.allows(host, address):
            raise CallbackRefused(
                f"callback_url's host {host} has the {kind} address {address}, which callbacks may not reach "
                "(allow it with ASYNCINFER_WEBHOOK_ALLOWED_HOSTS)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url=url, scheme=parts.scheme, host=host, port=port, address=str(addresses[0]), path=path)


def target_of(settings: Settings, url: str) -> Target:
    """`url` checked against the settings: the address an attempt may connect to, or CallbackRefused."""
    return check_callback_url(url, allow_http=settings.webhook_allow_http,
                              allowed=AllowList.parse(settings.webhook_allowed_hosts))
