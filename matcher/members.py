"""OrdStatus and ExecType members as constants, for compiled code (why:
:mod:`router.members`).  ``STATUS_FILLED is OrdStatus.FILLED``,
``EXEC_TRADE is ExecType.TRADE``."""

from __future__ import annotations

from typing import Final

from matcher.orders import ExecType, OrdStatus

STATUS_NEW: Final = OrdStatus.NEW
STATUS_PARTIALLY_FILLED: Final = OrdStatus.PARTIALLY_FILLED
STATUS_FILLED: Final = OrdStatus.FILLED
STATUS_CANCELED: Final = OrdStatus.CANCELED
STATUS_PENDING_CANCEL: Final = OrdStatus.PENDING_CANCEL
STATUS_REJECTED: Final = OrdStatus.REJECTED
STATUS_PENDING_NEW: Final = OrdStatus.PENDING_NEW
STATUS_EXPIRED: Final = OrdStatus.EXPIRED
STATUS_PENDING_REPLACE: Final = OrdStatus.PENDING_REPLACE

EXEC_NEW: Final = ExecType.NEW
EXEC_CANCELED: Final = ExecType.CANCELED
EXEC_REPLACED: Final = ExecType.REPLACED
EXEC_PENDING_CANCEL: Final = ExecType.PENDING_CANCEL
EXEC_REJECTED: Final = ExecType.REJECTED
EXEC_EXPIRED: Final = ExecType.EXPIRED
EXEC_PENDING_REPLACE: Final = ExecType.PENDING_REPLACE
EXEC_TRADE: Final = ExecType.TRADE
EXEC_ORDER_STATUS: Final = ExecType.ORDER_STATUS
