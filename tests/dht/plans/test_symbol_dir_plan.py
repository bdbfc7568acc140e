"""The symbol-directory plan on its own: batch boundaries, order, resume, refusals, the guard."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.dht.plans.symbol_dir import (
    Complete,
    Delete,
    Forget,
    Load,
    Pause,
    Store,
    SymbolDirPlan,
    SymbolFile,
    removable,
)


def listing(count: int, size: int = 10, block: str = "block_0") -> list[SymbolFile]:
    return [SymbolFile(f"{block}/{i:05d}", size) for i in range(count)]


def run_clean(plan: SymbolDirPlan) -> list[object]:
    """Drive ``plan`` with every file verified and every batch acknowledged."""
    actions: list[object] = []
    while (action := plan.next_action()) is not None:
        actions.append(action)
        if isinstance(action, Forget):
            plan.forgotten()
        elif isinstance(action, Load):
            plan.loaded(action.names)
        elif isinstance(action, Store):
            plan.stored()
        elif isinstance(action, Delete):
            plan.deleted()
    return actions


def test_batches_of_1000_in_sorted_order_then_complete_and_remove() -> None:
    files = listing(2500)[::-1]  # the listing's order does not matter: names are sorted
    plan = SymbolDirPlan("tx", "/data/rq/tx", files)
    actions = run_clean(plan)
    loads = [a for a in actions if isinstance(a, Load)]
    assert [len(a.names) for a in loads] == [1000, 1000, 500]
    flat = [n for a in loads for n in a.names]
    assert flat == sorted(f.name for f in files)
    kinds = [type(a).__name__ for a in actions]
    assert kinds == ["Load", "Store", "Delete"] * 3 + ["Complete"]
    assert actions[-1] == Complete(True)
    assert plan.done and plan.next_action() is None
    assert plan.outcome.stored == 2500 and plan.outcome.completed and plan.outcome.removed


def test_an_empty_directory_completes_at_once() -> None:
    plan = SymbolDirPlan("tx", "/x/tx", [])
    assert plan.next_action() == Complete(True)
    assert plan.done


def test_batches_also_end_at_the_byte_bound_and_a_large_file_goes_alone() -> None:
    files = [SymbolFile(f"b/{i}", 40) for i in range(5)] + [SymbolFile("b/9", 500)]
    plan = SymbolDirPlan("tx", "/x/tx", files, batch_size=1000, max_batch_bytes=100)
    loads = [a for a in run_clean(plan) if isinstance(a, Load)]
    assert [a.names for a in loads] == [("b/0", "b/1"), ("b/2", "b/3"), ("b/4",), ("b/9",)]


def test_journaled_names_are_deleted_first_and_never_loaded_again() -> None:
    files = listing(1200)
    journal = [f.name for f in files[:1000]] + ["block_0/gone-already"]
    plan = SymbolDirPlan("tx", "/x/tx", files, acked=journal)
    first = plan.next_action()
    assert first == Forget(tuple(sorted(journal)))
    plan.forgotten(["block_0/00003"])  # one could not be deleted
    actions = run_clean(plan)
    loaded = [n for a in actions if isinstance(a, Load) for n in a.names]
    assert loaded == [f.name for f in files[1000:]]
    assert plan.outcome.forgotten == 1000 and plan.outcome.undeletable == 1
    assert plan.outcome.stored == 200


def test_refused_files_are_reported_skipped_and_keep_the_directory() -> None:
    files = listing(10)
    plan = SymbolDirPlan("tx", "/x/tx", files, batch_size=5)
    action = plan.next_action()
    assert isinstance(action, Load)
    plan.loaded(
        action.names[2:],
        refused={action.names[0]: "content does not hash to its name"},
        missing=[action.names[1]],
    )
    assert plan.next_action() == Store(action.names[2:])
    plan.stored()
    assert plan.next_action() == Delete(action.names[2:])
    plan.deleted()
    rest = run_clean(plan)
    assert rest[-1] == Complete(False, "1 refused file left in it")
    assert plan.outcome.refused == 1 and plan.outcome.missing == 1
    assert plan.outcome.stored == 8 and plan.outcome.completed and not plan.outcome.removed


def test_a_batch_with_nothing_verified_sends_nothing() -> None:
    plan = SymbolDirPlan("tx", "/x/tx", listing(4), batch_size=2)
    first = plan.next_action()
    assert isinstance(first, Load)
    plan.loaded([], missing=first.names)
    second = plan.next_action()
    assert isinstance(second, Load) and second.names != first.names


def test_refused_earlier_are_not_read_again_but_keep_the_directory() -> None:
    files = listing(3)
    plan = SymbolDirPlan("tx", "/x/tx", files, refused=[files[0].name, "block_0/elsewhere"])
    actions = run_clean(plan)
    assert [n for a in actions if isinstance(a, Load) for n in a.names] == [
        f.name for f in files[1:]
    ]
    assert actions[-1] == Complete(False, "1 refused file left in it")


def test_a_failed_batch_pauses_and_the_next_round_starts_from_what_is_left() -> None:
    files = listing(3000)
    plan = SymbolDirPlan("tx", "/x/tx", files)
    run = 0
    while (action := plan.next_action()) is not None:
        if isinstance(action, Load):
            plan.loaded(action.names)
        elif isinstance(action, Store):
            run += 1
            if run == 2:
                plan.store_failed("too few nodes")
            else:
                plan.stored()
        elif isinstance(action, Delete):
            plan.deleted()
        last = action
    assert last == Pause("too few nodes")
    assert plan.outcome.error == "too few nodes" and not plan.outcome.completed
    assert plan.outcome.stored == 1000
    # What the next round sees: the first batch deleted, the rest still there.
    again = SymbolDirPlan("tx", "/x/tx", files[1000:])
    loads = [a for a in run_clean(again) if isinstance(a, Load)]
    assert [a.names[0] for a in loads] == [files[1000].name, files[2000].name]


def test_the_basename_guard_is_gos() -> None:
    assert removable("/data/rq/tx1", "tx1")
    assert removable("/data/rq/tx1/", "tx1")
    assert removable("/data/rq/./tx1", "tx1")
    assert removable("tx1", "tx1")
    assert not removable("/data/rq/other", "tx1")
    assert not removable("/data/rq/tx1/block_0", "tx1")
    assert not removable("/", "")
    assert not removable("", "tx1")
    assert not removable("/data/tx1", "")
    assert not removable(".", ".")
    assert not removable("..", "..")
    assert not removable("/data/rq/tx1/..", "tx1")


def test_a_directory_not_named_after_its_txid_completes_but_is_kept() -> None:
    plan = SymbolDirPlan("tx1", "/data/rq/not-tx1", listing(3))
    actions = run_clean(plan)
    assert actions[-1] == Complete(False, "its base name is not the txid")
    assert plan.outcome.completed and not plan.outcome.removed


def test_misuse_is_an_error_not_a_silent_skip() -> None:
    plan = SymbolDirPlan("tx", "/x/tx", listing(2))
    action = plan.next_action()
    assert isinstance(action, Load)
    with pytest.raises(RuntimeError):
        plan.next_action()
    with pytest.raises(RuntimeError):
        plan.stored()
    with pytest.raises(ValueError):
        plan.loaded(["block_0/not-in-the-batch"])
    with pytest.raises(ValueError):
        SymbolDirPlan("tx", "/x/tx", [], batch_size=0)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[SymbolFile], set[str], set[str], int, int]:
    names = draw(st.sets(st.text("abc/_0123", min_size=1, max_size=6), max_size=60))
    files = [SymbolFile(n, draw(st.integers(0, 50))) for n in names]
    journal = draw(st.sets(st.sampled_from(sorted(names)))) if names else set()
    refused = draw(st.sets(st.sampled_from(sorted(names)))) if names else set()
    return files, journal, refused - journal, draw(st.integers(1, 7)), draw(st.integers(1, 120))


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_every_file_is_loaded_once_within_bounds_and_stored_only_if_verified(
    scenario: tuple[list[SymbolFile], set[str], set[str], int, int], rng: random.Random
) -> None:
    files, journal, refused, batch_size, max_bytes = scenario
    sizes = {f.name: f.size for f in files}
    plan = SymbolDirPlan(
        "tx", "/x/tx", files, acked=journal, refused=refused,
        batch_size=batch_size, max_batch_bytes=max_bytes,
    )  # fmt: skip
    loaded: list[str] = []
    stored: list[str] = []
    verified_in_batch: tuple[str, ...] = ()
    refused_now = 0
    failed = False
    while (action := plan.next_action()) is not None:
        if isinstance(action, Forget):
            assert set(action.names) == journal and not loaded
            plan.forgotten()
        elif isinstance(action, Load):
            assert 1 <= len(action.names) <= batch_size
            size = sum(sizes[n] for n in action.names)
            assert len(action.names) == 1 or size <= max_bytes
            loaded.extend(action.names)
            fates = {n: rng.choice("vvvrm") for n in action.names}
            verified_in_batch = tuple(n for n in action.names if fates[n] == "v")
            bad = {n: "bad" for n in action.names if fates[n] == "r"}
            refused_now += len(bad)
            plan.loaded(verified_in_batch, bad, [n for n in action.names if fates[n] == "m"])
        elif isinstance(action, Store):
            assert action.names == verified_in_batch and action.names
            if rng.random() < 0.1:
                plan.store_failed("no")
                failed = True
            else:
                plan.stored()
        elif isinstance(action, Delete):
            stored.extend(action.names)
            plan.deleted()
        elif isinstance(action, Complete):
            assert not failed
            left_refused = refused_now + len(refused & set(sizes))
            assert action.remove == (left_refused == 0)
        else:
            assert isinstance(action, Pause) and failed
    expected = sorted(n for n in sizes if n not in journal and n not in refused)
    assert loaded == expected[: len(loaded)]
    if not failed:
        assert loaded == expected
    assert len(set(stored)) == len(stored) and set(stored) <= set(loaded)
    assert plan.outcome.stored == len(stored)


def test_misuse_names_what_went_wrong() -> None:
    plan = SymbolDirPlan("tx", "/x/tx", listing(6), batch_size=5)
    with pytest.raises(
        RuntimeError, match=r"^a Store result was reported, but nothing is awaited$"
    ):
        plan.stored()
    action = plan.next_action()
    assert isinstance(action, Load)
    with pytest.raises(RuntimeError, match=r"^Load has not been reported yet$"):
        plan.next_action()
    with pytest.raises(RuntimeError, match=r"^a Delete result was reported, but Load is awaited$"):
        plan.deleted()
    outside = ["block_0/x1", "block_0/x2", "block_0/x3", "block_0/x4"]
    with pytest.raises(
        ValueError,
        match=r"^names outside the batch were reported: \['block_0/x1', 'block_0/x2', "
        r"'block_0/x3'\]$",
    ):
        plan.loaded(action.names, refused=outside)
    again = SymbolDirPlan("tx", "/x/tx", listing(6), batch_size=5)
    action = again.next_action()
    assert isinstance(action, Load)
    with pytest.raises(ValueError, match="names outside the batch"):
        again.loaded(action.names, missing=["block_0/elsewhere"])
    for bad in ({"batch_size": 0}, {"max_batch_bytes": 0}):
        with pytest.raises(
            ValueError, match=r"^batch_size and max_batch_bytes must be at least 1$"
        ):
            SymbolDirPlan("tx", "/x/tx", [], **bad)  # type: ignore[arg-type]


def test_a_batch_may_fill_the_byte_bound_exactly() -> None:
    files = [SymbolFile(f"b/{i}", 10) for i in range(7)]
    plan = SymbolDirPlan("tx", "/x/tx", files, max_batch_bytes=30)
    loads = [a for a in run_clean(plan) if isinstance(a, Load)]
    assert [len(a.names) for a in loads] == [3, 3, 1]


def test_two_refused_files_are_counted_in_the_reason_kept() -> None:
    files = listing(4)
    plan = SymbolDirPlan("tx", "/x/tx", files, refused=[files[0].name, files[1].name])
    assert run_clean(plan)[-1] == Complete(False, "2 refused files left in it")


def test_undeletable_files_of_a_batch_are_counted() -> None:
    plan = SymbolDirPlan("tx", "/x/tx", listing(4), batch_size=2)
    for undeletable in (["block_0/00000"], ["block_0/00002", "block_0/00003"]):
        load = plan.next_action()
        assert isinstance(load, Load)
        plan.loaded(load.names)
        assert plan.next_action() == Store(load.names)
        plan.stored()
        assert plan.next_action() == Delete(load.names)
        plan.deleted(undeletable)
    assert plan.next_action() == Complete(True)
    assert plan.outcome.undeletable == 3 and plan.outcome.stored == 4
