"""Client order books, internal crossing and order state (no I/O)."""

from matcher.engine import (
    CancelOrder,
    Matcher,
    MatcherError,
    NewOrder,
    ReplaceOrder,
    Result,
    RouteNeed,
)
from matcher.execution import Execution
from matcher.orders import (
    CancelReject,
    CxlRejReason,
    CxlRejResponseTo,
    ExecType,
    Order,
    OrdRejReason,
    OrdStatus,
)

__all__ = [
    "CancelOrder",
    "CancelReject",
    "CxlRejReason",
    "CxlRejResponseTo",
    "ExecType",
    "Execution",
    "Matcher",
    "MatcherError",
    "NewOrder",
    "OrdRejReason",
    "OrdStatus",
    "Order",
    "ReplaceOrder",
    "Result",
    "RouteNeed",
]
