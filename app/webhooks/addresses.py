"""The guard against webhooks aimed at internal services (SSRF).

An endpoint URL is checked when it is saved and again before every attempt,
because the name may resolve to another address by then. Every address the
name resolves to must be public. The attempt then connects to the address
that was checked, so a DNS answer that changes between the check and the
connection cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.errors import FieldError

ALLOW_PRIVATE_VARIABLE = "CRM_WEBHOOKS_ALLOW_PRIVATE"
MAX_URL_LENGTH = 2000
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def private_allowed() -> bool:
    """Return True when CRM_WEBHOOKS_ALLOW_PRIVATE=1 lets endpoints be internal."""
    return os.environ.get(ALLOW_PRIVATE_VARIABLE, "") == "1"


def is_public(address: Address) -> bool:
    """Return True for an address on the public internet.

    Loopback, private (RFC 1918, unique local), link-local (including the
    169.254.169.254 metadata service), carrier-grade NAT, multicast,
    reserved and unspecified addresses are not public. An IPv4-mapped IPv6
    address is judged by its IPv4 address.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class Target:
    """An endpoint URL split for connecting to a checked address."""

    scheme: str
    host: str
    port: int
    address: str

    def url_for(self, url: str) -> str:
        """Return ``url`` with its host replaced by the checked address."""
        parts = urlsplit(url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return parts._replace(netloc=f"{literal}:{self.port}").geturl()


def check_url_syntax(field: str, url: str) -> str:
    """Return the trimmed URL; raises FieldError unless it is http(s) with a host."""
    url = url.strip()
    if not url:
        raise FieldError(field, url, "is required")
    if len(url) > MAX_URL_LENGTH:
        raise FieldError(field, url[:80], f"is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FieldError(field, url, "is not an http or https URL")
    if parts.username or parts.password:
        raise FieldError(field, url, "must not contain a user name or password")
    try:
        _ = parts.port
    except ValueError as error:
        raise FieldError(field, url, "has an invalid port") from error
    return url


async def resolve(host: str, port: int) -> list[Address]:
    """Return the addresses ``host`` resolves to; raises OSError when it does not."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[Address] = []
    for info in infos:
        # The scope of an IPv6 link-local address ("fe80::1%eth0") is dropped.
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def check_target(
    field: str, url: str, allow_private: bool | None = None
) -> Target:
    """Resolve the URL's host and return where to connect.

    Raises FieldError naming ``field`` and the address when the host does
    not resolve or resolves to any address that is not public, unless
    private addresses are allowed.
    """
    url = check_url_syntax(field, url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await resolve(host, port)
    except OSError as error:
        raise FieldError(
            field, url, f"has a host that does not resolve ({error})"
        ) from error
    if not addresses:
        raise FieldError(field, url, "has a host that does not resolve")
    allowed = private_allowed() if allow_private is None else allow_private
    if not allowed:
        for address in addresses:
            if not is_public(address):
                raise FieldError(
                    field,
                    url,
                    f"resolves to {address}, which is not a public address; "
                    f"set {ALLOW_PRIVATE_VARIABLE}=1 to allow internal endpoints",
                )
    return Target(parts.scheme, host, port, str(addresses[0]))
