"""The members of the order's enums as constants, for compiled code.

On Python 3.11 an enum's class answers an attribute through the enum
type's ``__getattr__`` hook, so ``Side.BUY`` read from compiled code costs
about 150 ns, where a ``Final`` name of a compiled module is a load from a
C static (2 ns).  The order path reads such members tens of times per
order; its compiled modules take them from here (and from
:mod:`matcher.members`).  They are the very members: ``BUY is Side.BUY``.
"""

from __future__ import annotations

from typing import Final

from router.model import OrdType, Side, TimeInForce

BUY: Final = Side.BUY
SELL: Final = Side.SELL

MARKET: Final = OrdType.MARKET
LIMIT: Final = OrdType.LIMIT

DAY: Final = TimeInForce.DAY
GTC: Final = TimeInForce.GTC
IOC: Final = TimeInForce.IOC
FOK: Final = TimeInForce.FOK
