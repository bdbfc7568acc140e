"""The Go supernode's ``config.yml``, read as it is: which of its fields we honour, and how.

The Go node (LumeraProtocol/supernode, ``supernode/config/config.go``) decodes its file with
``yaml.v3`` into structs and ignores keys it does not know. We list its fields explicitly, from
the current release and the older layouts its own sample and test configs still use, and
accept exactly those, so a misspelt key is refused instead of silently taking a default:

* fields we share (``p2p.port``, ``keyring.dir``, …) are ours and validated as ours;
* ``supernode.key_name``/``identity``/``host`` (``ip_address``, the older name of ``host``) fill
  our ``key_name``/``identity``/``p2p.listen_address`` when those are not set;
* ``keyring.password`` (a 2025 layout's passphrase of the ``file`` backend, still in Go's test
  configs though the Go node no longer reads it) is our ``passphrase_plain``;
* ``log.level`` is our ``log.level`` (Go's ``warn`` and ``fatal`` included);
* the rest (``raptorq``, ``storage_challenge``, ``self_healing``, the gas and fee tuning of
  ``lumera``, ``supernode.port``…) concerns parts of the Go node this one does not have: its
  spelling and types are checked as Go would decode them, and the values are not used.

:func:`adapt` rewrites a parsed mapping into our layout before validation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

__all__ = [
    "GO_ONLY_SECTIONS",
    "GO_SHARED_FIELDS",
    "GoAdapted",
    "adapt",
    "go_field_names",
]

_MAX_UINT64 = 2**64 - 1
_INT64 = 2**63


def _scalar_text(value: object) -> object:
    """yaml.v3 decodes any scalar into a Go string as written: ``gas_price: 0.025`` is text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


_DURATION_RE = re.compile(r"^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$")


def _duration(value: object) -> object:
    """A Go ``time.Duration`` as yaml.v3 reads it: ``time.ParseDuration`` text (``30s``)."""
    if isinstance(value, str) and _DURATION_RE.match(value.strip()):
        return value.strip()
    raise ValueError("must be a Go duration such as '30s' or '1m30s'")


GoText = Annotated[str, BeforeValidator(_scalar_text)]
GoBool = Annotated[bool, Field(strict=True)]
GoInt = Annotated[int, Field(strict=True, ge=-_INT64, lt=_INT64)]
GoUint16 = Annotated[int, Field(strict=True, ge=0, le=65535)]
GoUint64 = Annotated[int, Field(strict=True, ge=0, le=_MAX_UINT64)]
GoFloat = Annotated[float, Field(allow_inf_nan=False)]
GoDuration = Annotated[str, BeforeValidator(_duration)]


class _GoSection(BaseModel):
    # Every field is optional: yaml.v3 leaves a missing or null field at its zero value.
    model_config = ConfigDict(extra="forbid", frozen=True)


class GoSupernodeSection(_GoSection):
    """``supernode:``: the Go node's identity and its own (non-P2P) service ports."""

    key_name: GoText | None = None
    identity: GoText | None = None
    host: GoText | None = None
    ip_address: GoText | None = None
    port: GoUint16 | None = None
    gateway_port: GoUint16 | None = None
    evm_key_name: GoText | None = None
    #: 2025-04 layout only (later ``p2p.data_dir`` and ``raptorq.files_dir``).
    data_dir: GoText | None = None


class GoLumeraTuning(_GoSection):
    """The Go-only keys of ``lumera:``: transaction gas and fee tuning, and an old timeout."""

    gas_adjustment: GoFloat | None = None
    gas_adjustment_multiplier: GoFloat | None = None
    gas_adjustment_max_attempts: GoInt | None = None
    gas_padding: GoUint64 | None = None
    gas_price: GoText | None = None
    fee_denom: GoText | None = None
    #: 2025-05 layout only.
    timeout: GoInt | None = None


class GoRaptorQSection(_GoSection):
    """``raptorq:``: where the Go node keeps RaptorQ symbol files."""

    files_dir: GoText | None = None
    #: 2025-04 layout only (an external RaptorQ service).
    service_address: GoText | None = None
    service_port: GoUint16 | None = None


class GoRecheckSection(_GoSection):
    """``storage_challenge.lep6.recheck:``."""

    enabled: GoBool | None = None
    lookback_epochs: GoUint64 | None = None
    max_per_tick: GoInt | None = None
    tick_interval_ms: GoInt | None = None
    max_failure_attempts_per_ticket: GoInt | None = None
    failure_backoff_ttl_ms: GoInt | None = None


class GoLep6Section(_GoSection):
    """``storage_challenge.lep6:``."""

    enabled: GoBool | None = None
    max_concurrent_targets: GoInt | None = None
    recipient_read_timeout: GoDuration | None = None
    recheck: GoRecheckSection | None = None


class GoStorageChallengeSection(_GoSection):
    """``storage_challenge:``: the Go node's storage-challenge runtime."""

    enabled: GoBool | None = None
    poll_interval_ms: GoUint64 | None = None
    submit_evidence: GoBool | None = None
    lep6: GoLep6Section | None = None


class GoSelfHealingSection(_GoSection):
    """``self_healing:``: the Go node's LEP-6 self-healing runtime."""

    enabled: GoBool | None = None
    poll_interval_ms: GoInt | None = None
    max_concurrent_reconstructs: GoInt | None = None
    max_concurrent_verifications: GoInt | None = None
    max_concurrent_publishes: GoInt | None = None
    staging_dir: GoText | None = None
    verifier_fetch_timeout_ms: GoInt | None = None
    verifier_fetch_attempts: GoInt | None = None
    verifier_backoff_base_ms: GoInt | None = None
    audit_query_timeout_ms: GoInt | None = None


#: Whole sections of the Go config that this node does not use (checked, then dropped).
GO_ONLY_SECTIONS: Mapping[str, type[_GoSection]] = {
    "supernode": GoSupernodeSection,
    "raptorq": GoRaptorQSection,
    "storage_challenge": GoStorageChallengeSection,
    "self_healing": GoSelfHealingSection,
}
#: Go-only keys inside sections we own (checked, then dropped).
_GO_KEYS_IN_OUR_SECTIONS: Mapping[str, type[_GoSection]] = {"lumera": GoLumeraTuning}
#: Go fields that are ours too, by section (``keyring.password`` is mapped, see above).
GO_SHARED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "keyring": ("backend", "dir", "passphrase_plain", "passphrase_env", "passphrase_file"),
    "p2p": ("port", "data_dir", "bootstrap_nodes", "listen_address", "external_ip"),
    "lumera": ("grpc_addr", "chain_id"),
    "log": ("level",),
}
_PASSPHRASE_SOURCES = ("passphrase_plain", "passphrase_env", "passphrase_file")


def _dotted_fields(model: type[BaseModel], prefix: str) -> list[str]:
    names: list[str] = []
    for name, info in model.model_fields.items():
        sub = model_in(info.annotation)
        names.append(f"{prefix}.{name}")
        if sub is not None:
            names.extend(_dotted_fields(sub, f"{prefix}.{name}"))
    return names


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model in a field's annotation (``X``, ``X | None``), if any."""
    for arg in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def go_field_names() -> list[str]:
    """Every Go config field we know of, dotted (``lumera.gas_price``), sections included."""
    names: list[str] = []
    for section, model in GO_ONLY_SECTIONS.items():
        names.append(section)
        names.extend(_dotted_fields(model, section))
    for section, model in _GO_KEYS_IN_OUR_SECTIONS.items():
        names.extend(_dotted_fields(model, section))
    for section, keys in GO_SHARED_FIELDS.items():
        names.extend(f"{section}.{key}" for key in keys)
    names.append("keyring.password")
    return names


def go_keys_of(section: str) -> tuple[str, ...]:
    """The Go-only keys accepted inside one of our sections (for "did you mean" hints)."""
    model = _GO_KEYS_IN_OUR_SECTIONS.get(section)
    extra = ("password",) if section == "keyring" else ()
    return (*(model.model_fields if model else ()), *extra)


@dataclass
class GoAdapted:
    """A mapping in our layout, and what was wrong with its Go-only parts.

    ``renames`` maps a field of ours to the Go field its value came from, so that a problem
    with the value is reported under the name the operator wrote.
    """

    data: dict[Any, Any]
    invalid: list[tuple[str, ValidationError]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    renames: dict[str, str] = field(default_factory=dict)


def _filled(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def adapt(data: Mapping[Any, Any]) -> GoAdapted:
    """Check and drop the Go-only parts of ``data`` and map the honoured ones onto ours."""
    out = GoAdapted(dict(data))
    for section, model in GO_ONLY_SECTIONS.items():
        if section not in out.data:
            continue
        value = out.data.pop(section)
        if value is None:
            continue
        try:
            model.model_validate(value)
        except ValidationError as exc:
            out.invalid.append((section, exc))
        if section == "supernode" and isinstance(value, Mapping):
            _map_supernode(value, out)
    for section, model in _GO_KEYS_IN_OUR_SECTIONS.items():
        ours = out.data.get(section)
        if not isinstance(ours, Mapping):
            continue
        go_part = {k: v for k, v in ours.items() if k in model.model_fields}
        if not go_part:
            continue
        try:
            model.model_validate(go_part)
        except ValidationError as exc:
            out.invalid.append((section, exc))
        out.data[section] = {k: v for k, v in ours.items() if k not in go_part}
    _map_keyring_password(out)
    return out


def _map_supernode(sn: Mapping[Any, Any], out: GoAdapted) -> None:
    for key in ("key_name", "identity"):
        value = sn.get(key)
        if not _filled(value):
            continue
        if _filled(out.data.get(key)):
            if out.data[key] != value:
                out.problems.append((f"supernode.{key}", f"disagrees with the top-level {key}"))
            continue
        out.data[key] = value
        out.renames[key] = f"supernode.{key}"
    # Go: ``host`` unless it is blank, then the older ``ip_address``.
    source = "host" if _filled(sn.get("host")) else "ip_address"
    host = sn.get(source)
    p2p = out.data.get("p2p")
    if _filled(host) and isinstance(p2p, Mapping) and "listen_address" not in p2p:
        out.data["p2p"] = {**p2p, "listen_address": host}
        out.renames["p2p.listen_address"] = f"supernode.{source}"


def _map_keyring_password(out: GoAdapted) -> None:
    ring = out.data.get("keyring")
    if not isinstance(ring, Mapping) or "password" not in ring:
        return
    rest = {k: v for k, v in ring.items() if k != "password"}
    out.data["keyring"] = rest
    password = ring["password"]
    if password is None or password == "":
        return
    if not isinstance(password, str):
        # The value is a secret: named, never shown.
        out.problems.append(("keyring.password", "must be a string (quote it)"))
        return
    others = [k for k in _PASSPHRASE_SOURCES if _filled(rest.get(k))]
    if others:
        out.problems.append(
            (
                "keyring.password",
                f"set at most one passphrase source, got password and {', '.join(others)} "
                "(password is the older name of passphrase_plain)",
            )
        )
        return
    rest["passphrase_plain"] = password
    out.renames["keyring.passphrase_plain"] = "keyring.password"
