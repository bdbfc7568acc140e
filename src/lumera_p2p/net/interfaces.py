"""The machine's own IP addresses, per interface, from the standard library and Linux.

``ip -j addr`` (iproute2) when it is installed, else ``/proc/net/if_inet6`` for IPv6 and the
``SIOCGIFADDR`` ioctl for each interface's IPv4 address. Nothing here touches the network:
``doctor`` compares ``p2p.external_ip`` and ``listen_address`` with what it finds.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

_SIOCGIFADDR = 0x8915
_IF_INET6 = Path("/proc/net/if_inet6")
#: The most of ``ip -j addr`` read (a machine with thousands of addresses is not a node).
_MAX_IP_OUTPUT = 4 * 1024 * 1024


@dataclass(frozen=True, order=True)
class InterfaceAddress:
    """One address of one interface."""

    interface: str
    address: str


def parse_ip_json(text: str) -> list[InterfaceAddress]:
    """The addresses in ``ip -j addr`` output; anything malformed is skipped."""
    try:
        doc = json.loads(text)
    except ValueError:
        return []
    out: list[InterfaceAddress] = []
    for link in doc if isinstance(doc, list) else []:
        if not isinstance(link, dict):
            continue
        name = str(link.get("ifname", "?"))
        infos = link.get("addr_info")
        for info in infos if isinstance(infos, list) else []:
            local = info.get("local") if isinstance(info, dict) else None
            address = _normal(local) if isinstance(local, str) else None
            if address is not None:
                out.append(InterfaceAddress(name, address))
    return out


def parse_if_inet6(text: str) -> list[InterfaceAddress]:
    """The addresses in ``/proc/net/if_inet6`` (32 hex digits, index, prefix, scope, flags,
    name per line)."""
    out: list[InterfaceAddress] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 6 or len(fields[0]) != 32:
            continue
        try:
            address = str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
        except ValueError:
            continue
        out.append(InterfaceAddress(fields[5], address))
    return out


def _normal(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return None


def _from_ip_command() -> list[InterfaceAddress] | None:
    tool = shutil.which("ip")
    if tool is None:
        return None
    try:
        done = subprocess.run(
            [tool, "-j", "addr", "show"], capture_output=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0 or len(done.stdout) > _MAX_IP_OUTPUT:
        return None
    found = parse_ip_json(done.stdout.decode("utf-8", "replace"))
    return found or None


def _ipv4_of(name: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()))
        except OSError:
            return None  # no IPv4 address on this interface
    return socket.inet_ntoa(packed[20:24])


def _from_kernel() -> list[InterfaceAddress]:
    out: list[InterfaceAddress] = []
    with contextlib.suppress(OSError):
        for _, name in socket.if_nameindex():
            address = _ipv4_of(name)
            if address is not None:
                out.append(InterfaceAddress(name, address))
    with contextlib.suppress(OSError):
        out.extend(parse_if_inet6(_IF_INET6.read_text()))
    return out


def local_addresses() -> list[InterfaceAddress]:
    """Every IP address of this machine's interfaces, sorted, without duplicates."""
    found = _from_ip_command()
    if found is None:
        found = _from_kernel()
    return sorted(set(found))
