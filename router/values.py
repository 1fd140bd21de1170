"""Equality by content for the plain value classes of the order path
(compiled code reads a msgspec Struct's fields through the type's
descriptors, a native class's as a load: ``docs/compiled.md``)."""

from __future__ import annotations


class Value:
    """An immutable value equal to another of its class with the same
    :meth:`fields`, hashed by them, and shown as its class called with
    them.  A subclass declares its attributes ``Final``: read-only once
    compiled, and mypy refuses an assignment in the sources (interpreted,
    nothing stops one)."""

    __slots__ = ()

    def fields(self) -> tuple[object, ...]:
        """Every field, in the order of the constructor's arguments."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Value)
        return self.fields() == other.fields()

    def __hash__(self) -> int:
        return hash(self.fields())

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.fields()!r}"
