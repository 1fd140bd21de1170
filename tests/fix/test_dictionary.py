"""The dictionary's own consistency: what the checks read a group by."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.fix.dictionary import GroupDef, fix44


def test_a_group_that_contradicts_itself_is_refused_when_built() -> None:
    """Both checks read a group by its delimiter, members and count tag: a
    dictionary where those disagree is refused as it is built, naming the
    group, instead of being misread message by message."""
    nested = GroupDef(
        count_tag=539, delimiter=524, members=frozenset({524}), required=(), groups={}
    )
    with pytest.raises(ValueError, match="group 453: its delimiter 448 is not a member"):
        GroupDef(count_tag=453, delimiter=448, members=frozenset({447}), required=(), groups={})
    with pytest.raises(ValueError, match="group 453: a required tag is not a member"):
        GroupDef(count_tag=453, delimiter=448, members=frozenset({448}), required=(447,), groups={})
    with pytest.raises(ValueError, match="group 539 is listed under tag 802"):
        GroupDef(
            count_tag=453,
            delimiter=448,
            members=frozenset({448, 802}),
            required=(),
            groups={802: nested},
        )
    with pytest.raises(ValueError, match="the count tag 539 of a group is not one of its fields"):
        GroupDef(
            count_tag=453,
            delimiter=448,
            members=frozenset({448}),
            required=(),
            groups={539: nested},
        )
    order = fix44().messages[b"D"]
    with pytest.raises(ValueError, match="message b'D': the count tag 539"):
        dataclasses.replace(order, groups={**order.groups, 539: nested})
