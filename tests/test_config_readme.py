"""The README documents every config key, every Go field we know, and the registry file."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel

from lumera_p2p.chain import static_registry
from lumera_p2p.config import Config
from lumera_p2p.config_go import go_field_names, model_in
from lumera_p2p.localnet import create_localnet

README = Path(__file__).resolve().parent.parent / "README.md"


def section(title: str) -> str:
    """The README text under the heading ``title``, up to the next heading of any level."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ )", text, re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def table_keys(text: str) -> dict[str, str]:
    """First-column keys of the markdown tables in ``text`` (``| `p2p.port` | … |``) → row."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([^`]+)` \|(.*)$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def model_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field of ``model`` and its sections, dotted."""
    keys: list[str] = []
    for name, info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        sub = model_in(info.annotation)
        if sub is not None:
            keys.extend(model_keys(sub, dotted + "."))
    return keys


def test_every_config_key_is_documented() -> None:
    documented = table_keys(section("Every key"))
    keys = model_keys(Config)
    assert len(keys) > 25
    missing = [key for key in keys if key not in documented]
    assert not missing, f"config keys missing from the README's 'Every key' table: {missing}"
    stale = [key for key in documented if key not in keys]
    assert not stale, f"README documents keys the model does not have: {stale}"


def test_every_go_field_is_in_the_go_table() -> None:
    text = section("Go supernode configs")
    rows = table_keys(text)
    missing = []
    for name in go_field_names():
        head, _, rest = name.partition(".")
        in_row = rest and f"`{rest}`" in rows.get(head, "")
        if name not in rows and not in_row:
            missing.append(name)
    assert not missing, f"Go fields missing from the README's Go table: {missing}"


def test_keys_of_a_generated_localnet_config_are_documented(tmp_path: Path) -> None:
    documented = table_keys(section("Every key"))
    node = create_localnet(tmp_path, 1)[0]

    def walk(prefix: str, data: object) -> list[str]:
        if not isinstance(data, dict):
            return []
        out = []
        for key, value in data.items():
            out.append(prefix + key)
            out.extend(walk(f"{prefix}{key}.", value))
        return out

    used = walk("", yaml.safe_load(node.config_path.read_text()))
    assert len(used) > 8
    assert [key for key in used if key not in documented] == []


def test_registry_file_format_is_documented() -> None:
    text = section("The registry file")
    rows = table_keys(text)
    # The parser's own key sets: a key added there and not here fails this test.
    for key in static_registry._TOP_KEYS | static_registry._ENTRY_KEYS:
        assert key in rows, key
    example = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))  # type: ignore[union-attr]
    assert set(example) == static_registry._TOP_KEYS
    assert set(example["supernodes"][0]) == static_registry._ENTRY_KEYS
