"""Which webhook URLs may be called: http(s) only, and hosts that resolve to public addresses.

The host is resolved at send time (a name can point anywhere later) and the connection is made
to the address that was checked, so a second lookup cannot swap in a private one."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

MAX_URL_LENGTH = 2000


class UnsafeURL(ValueError):
    """The URL cannot be used for a webhook; str(err) says why."""


def check_url(url: str) -> str:
    """The URL, stripped, if it may be registered; the address check happens at send time too."""
    url = (url or "").strip()
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("Only http:// and https:// URLs can receive webhooks.")
    if not parts.hostname:
        raise UnsafeURL("The URL has no host name.")
    if parts.username or parts.password:
        raise UnsafeURL("The URL must not carry a user name or password; verify the signature "
                        "instead.")
    try:
        parts.port  # noqa: B018 -- raises on a port that is not a number in range
    except ValueError as err:
        raise UnsafeURL("The URL's port is not a valid port number.") from err
    literal = _ip(parts.hostname)
    if literal is not None and not allowed(literal):
        raise UnsafeURL(_private_message(parts.hostname, literal))
    return url


def resolve(host: str, port: int) -> str:
    """The address to connect to, after checking every address the host resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise UnsafeURL(f"The host {host} could not be resolved ({err}).") from err
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        ip = _ip(address)
        if ip is None or not allowed(ip):
            raise UnsafeURL(_private_message(host, ip or address))
    return addresses[0]


def allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # is_global is False for private, loopback, link-local (169.254.169.254, the cloud metadata
    # address), shared (100.64/10), reserved and unspecified addresses.
    return ip.is_global and not ip.is_multicast


def _ip(text: str):
    try:
        return ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None


def _private_message(host: str, ip) -> str:
    return (f"{host} resolves to {ip}, a private, loopback, link-local or metadata address; "
            "webhooks go to public addresses only (WEBHOOK_ALLOW_PRIVATE lifts this).")
