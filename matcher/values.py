"""Equality by content for the matcher's plain value classes."""

from __future__ import annotations


class Value:
    """An immutable value equal to another of its class with the same
    :meth:`fields`, and hashed by them."""

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
