"""Manifest trees: built in bounded memory, walked in order, from any offset, checked as fed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.content import digest
from lumera_p2p.errors import ManifestError
from lumera_p2p.files.manifest import Entry, Manifest
from lumera_p2p.files.tree import ChunkRef, NeedManifest, Node, TreeBuilder, TreeWalker

WHOLE = b"w" * 32


def build(lengths: list[int], fan: int) -> tuple[Node, dict[bytes, bytes], list[Entry]]:
    """A tree over chunks of ``lengths``: the root, every other node by key, the chunks."""
    builder = TreeBuilder(fan)
    stored: dict[bytes, bytes] = {}
    chunks = [Entry(digest(i.to_bytes(4, "big")), n) for i, n in enumerate(lengths)]
    for chunk in chunks:
        for node in builder.add(chunk.key, chunk.length):
            stored[node.key] = node.data
    root, rest = builder.finish(WHOLE)
    for node in rest:
        stored[node.key] = node.data
    return root, stored, chunks


def walk(root: Node, stored: dict[bytes, bytes], offset: int = 0) -> tuple[list[ChunkRef], int]:
    """Every chunk ref from ``offset``, and how many manifests had to be fed."""
    walker = TreeWalker(Manifest.decode(root.data), offset)
    refs: list[ChunkRef] = []
    fed = 0
    while (step := walker.next()) is not None:
        if isinstance(step, NeedManifest):
            walker.feed(stored[step.key])
            fed += 1
        else:
            refs.append(step)
    return refs, fed


@given(st.lists(st.integers(1, 50), max_size=300), st.integers(2, 7))
@settings(max_examples=150)
def test_a_walk_gives_back_every_chunk_in_order(lengths: list[int], fan: int) -> None:
    root, stored, chunks = build(lengths, fan)
    top = Manifest.decode(root.data)
    assert top.root and top.whole == WHOLE and top.total == sum(lengths)
    for data in stored.values():
        node = Manifest.decode(data)
        assert not node.root
        assert 1 <= len(node.entries) <= fan
    assert len(top.entries) <= fan
    refs, fed = walk(root, stored)
    assert [Entry(r.key, r.length) for r in refs] == chunks
    assert [r.offset for r in refs] == [sum(lengths[:i]) for i in range(len(lengths))]
    assert fed == len(stored)  # every node is needed once, and nothing else was stored


@given(st.lists(st.integers(1, 50), min_size=1, max_size=200), st.integers(2, 5), st.data())
@settings(max_examples=150)
def test_a_walk_from_an_offset_skips_what_lies_before(
    lengths: list[int], fan: int, data: st.DataObject
) -> None:
    root, stored, chunks = build(lengths, fan)
    total = sum(lengths)
    offset = data.draw(st.integers(0, total))
    refs, fed = walk(root, stored, offset)
    ends = [sum(lengths[: i + 1]) for i in range(len(lengths))]
    expected = [c for c, end in zip(chunks, ends, strict=True) if end > offset]
    assert [Entry(r.key, r.length) for r in refs] == expected
    if refs:
        assert refs[0].offset <= offset < refs[0].offset + refs[0].length or offset == 0
    _, fed_all = walk(root, stored)
    assert fed <= fed_all


def test_the_tree_is_canonical_and_as_shallow_as_it_can_be() -> None:
    # A file of exactly `fan` chunks is one root leaf; one more chunk adds a level.
    root, stored, _ = build([3] * 4, 4)
    assert Manifest.decode(root.data).depth == 0 and not stored
    root, stored, _ = build([3] * 5, 4)
    assert Manifest.decode(root.data).depth == 1 and len(stored) == 2
    root, stored, _ = build([3] * 16, 4)
    assert Manifest.decode(root.data).depth == 1 and len(stored) == 4
    root, stored, _ = build([3] * 17, 4)
    top = Manifest.decode(root.data)
    assert top.depth == 2 and len(top.entries) == 2
    assert build([3] * 17, 4)[0] == root  # the same chunks always give the same root key
    empty, stored, _ = build([], 4)
    assert Manifest.decode(empty.data) == Manifest(0, (), WHOLE) and not stored


def test_the_builder_holds_one_open_node_per_level() -> None:
    builder = TreeBuilder(3)
    for i in range(3**5):
        builder.add(digest(i.to_bytes(4, "big")), 1)
        assert all(1 <= len(level) <= 3 for level in builder._levels)
        assert len(builder._levels) <= 5
    builder.finish(WHOLE)
    with pytest.raises(ValueError, match="finished"):
        builder.add(b"k" * 32, 1)


def test_a_fed_manifest_must_be_the_one_its_parent_names() -> None:
    root, stored, _ = build([5] * 9, 3)
    top = Manifest.decode(root.data)
    first, second = top.entries[0].key, top.entries[1].key

    def fresh() -> TreeWalker:
        walker = TreeWalker(top)
        assert isinstance(walker.next(), NeedManifest)
        return walker

    with pytest.raises(ManifestError, match="does not hash"):
        fresh().feed(stored[second])
    with pytest.raises(ValueError, match="no manifest was asked"):
        TreeWalker(top).feed(b"")
    # A node whose bytes hash right but break a rule of the tree (a forged child: here the
    # parent claims a different length) is refused by what the parent says.
    liar = Manifest(1, (Entry(first, 14), Entry(second, 15), top.entries[2]), WHOLE)
    walker = TreeWalker(liar)
    assert isinstance(walker.next(), NeedManifest)
    with pytest.raises(ManifestError, match="covers 15 bytes, its parent says 14"):
        walker.feed(stored[first])
    deeper = Manifest(2, (top.entries[0], top.entries[1]), WHOLE)
    walker = TreeWalker(deeper)
    walker.next()
    with pytest.raises(ManifestError, match="depth 0, expected 1"):
        walker.feed(stored[first])
    with pytest.raises(ManifestError, match="not a whole file"):
        TreeWalker(Manifest.decode(stored[first]))
    with pytest.raises(ValueError, match="outside the file"):
        TreeWalker(top, top.total + 1)
