"""The suite's own scheduling (``tests/scheduling.py``): the longest modules first."""

from __future__ import annotations

from tests.scheduling import longest_first


class TestLongestFirst:
    """Collection order by measured seconds per module."""

    def test_measured_modules_go_first_longest_first(self) -> None:
        """A 3-minute module collected last runs first; a module's tests keep their order;
        unmeasured modules follow in their own order."""
        ids = [
            "tests/a.py::t1",
            "tests/a.py::t2",
            "tests/b.py::t1",
            "tests/c.py::t1",
            "tests/d.py::T::t1[x]",
            "tests/d.py::T::t1[y]",
        ]
        order = longest_first(ids, {"tests/d.py": 180.0, "tests/b.py": 5.0})
        assert [ids[i] for i in order] == [
            "tests/d.py::T::t1[x]",
            "tests/d.py::T::t1[y]",
            "tests/b.py::t1",
            "tests/a.py::t1",
            "tests/a.py::t2",
            "tests/c.py::t1",
        ]

    def test_without_measurements_modules_keep_their_order(self) -> None:
        """No file: modules in the order they were collected, each module's tests together
        (as xdist hands them out by file anyway)."""
        ids = ["tests/b.py::t", "tests/a.py::t", "tests/b.py::u"]
        assert longest_first(ids, {}) == [0, 2, 1]
