"""read_ahead: a source's batches computed one ahead in a thread, in order, errors in place."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from ingestion.kinds.common import read_ahead


def test_items_come_in_order_and_one_is_computed_ahead() -> None:
    computed: list[int] = []
    second_asked = threading.Event()

    def items() -> Iterator[int]:
        for n in range(5):
            if n == 2:
                second_asked.set()
            computed.append(n)
            yield n

    ahead = read_ahead(items())
    assert next(ahead) == 0
    # while the caller holds item 0, the thread computes item 1 and starts on 2
    assert second_asked.wait(timeout=60)
    assert computed[:2] == [0, 1]
    assert list(ahead) == [1, 2, 3, 4]


def test_an_error_is_raised_at_its_place_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("line 3 is not JSON")

    got: list[int] = []
    with pytest.raises(ValueError, match="line 3 is not JSON"):
        for item in read_ahead(items()):
            got.append(item)
    assert got == [1, 2]


def test_closing_stops_the_thread_and_closes_the_source() -> None:
    closed = threading.Event()
    produced: list[int] = []

    def items() -> Iterator[int]:
        try:
            n = 0
            while True:  # an endless source: only closing ends it
                produced.append(n)
                yield n
                n += 1
        finally:
            closed.set()

    ahead = read_ahead(items())
    assert next(ahead) == 0
    ahead.close()  # joins the thread: it has stopped when this returns
    assert closed.is_set()
    assert not [t for t in threading.enumerate() if t.name == "read-ahead"]
    # at most the item handed out, the one waiting and the one being computed
    assert len(produced) <= 3
