"""`make_record`: records made from their field values without the dataclass `__init__` (C), equal
to those `__init__` makes, for every record class, and sent between processes the same way."""

from __future__ import annotations

import importlib
import pickle
import pkgutil
import sys

import pytest

import dronewatch
from dronewatch.core.hooks import Record, field_names, make_record
from dronewatch.fastpath import NO_C_ENV, native


def _record_classes() -> list[type[Record]]:
    for info in pkgutil.walk_packages(dronewatch.__path__, "dronewatch."):
        if ".api" not in info.name and ".cli" not in info.name:
            importlib.import_module(info.name)
    found: list[type[Record]] = []
    todo = [Record]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            todo.append(sub)
            module = sys.modules.get(sub.__module__)
            # The class its module names (`slots=True` makes a new class; the first one lingers).
            if getattr(module, sub.__qualname__, None) is sub and field_names(sub):
                found.append(sub)
    return sorted(set(found), key=lambda c: f"{c.__module__}.{c.__qualname__}")


RECORDS = _record_classes()


def _values(cls: type[Record], salt: int) -> tuple[object, ...]:
    """A distinct value per field (the type does not matter to the slots)."""
    return tuple(
        f"{name}-{salt}" if i % 2 else i * 7 + salt for i, name in enumerate(field_names(cls))
    )


def test_the_record_classes_are_found() -> None:
    names = {c.__name__ for c in RECORDS}
    assert {"FlowRecord", "EgressRecord", "DnsRecord", "Alert"} <= names


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("c", [True, False], ids=["c", "python"])
def test_made_record_equals_the_init_one_and_survives_pickling(
    cls: type[Record], c: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every field holds its value, the record equals (and hashes as) `cls(*values)`, and a
    pickled record comes back equal, with the C extension and without it."""
    if not c:
        monkeypatch.setenv(NO_C_ENV, "1")
    elif native() is None:
        pytest.skip("the C extension is not built")
    monkeypatch.setattr("dronewatch.core.hooks._MAKERS", {})
    values = _values(cls, 3)
    made = make_record(cls, values)
    assert type(made) is cls
    assert tuple(getattr(made, n) for n in field_names(cls)) == values
    if not hasattr(cls, "__post_init__"):
        ref = cls(*values)
        assert made == ref and hash(made) == hash(ref)
    assert pickle.loads(pickle.dumps(made, pickle.HIGHEST_PROTOCOL)) == made


@pytest.mark.parametrize("c", [True, False], ids=["c", "python"])
def test_wrong_count_of_values_is_a_type_error(c: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not c:
        monkeypatch.setenv(NO_C_ENV, "1")
    elif native() is None:
        pytest.skip("the C extension is not built")
    monkeypatch.setattr("dronewatch.core.hooks._MAKERS", {})
    flow_record = next(c for c in RECORDS if c.__name__ == "FlowRecord")
    with pytest.raises(TypeError, match="FlowRecord takes 45 field values, 3 given"):
        make_record(flow_record, (1, 2, 3))


def test_c_refuses_a_member_of_another_class() -> None:
    """`new_record` stores only into slots of the class it makes (or of its ancestors)."""
    c = native()
    if c is None:
        pytest.skip("the C extension is not built")
    flow_record = next(k for k in RECORDS if k.__name__ == "FlowRecord")
    dns = next(k for k in RECORDS if k.__name__ == "DnsRecord")
    foreign = (dns.__dict__["query"],)
    with pytest.raises(TypeError, match="member 0 is not a slot of"):
        c.new_record(flow_record, foreign, ("x",))
    with pytest.raises(TypeError, match="member 0 is not a slot of"):
        c.new_record(flow_record, (field_names,), ("x",))
