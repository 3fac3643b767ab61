"""Broker errors, by what the caller should do about them.

- ``BrokerUnavailable``: the link to the terminal is down (IPC, disconnect): transient, try later.
- ``BrokerSetupError``: connecting cannot succeed until the operator fixes something (terminal
  path, credentials, account, symbol names). The message says what.
- ``OrderRejected``: the server (or a pre-send check) refused the request; not placed; the
  reason is recorded, no retry.
- ``TradingDisabled``: fatal for entries: stop opening trades and tell the operator
  ``instruction`` (e.g. press the Algo Trading button).
- ``OrderNotPlaced``: a transport failure during ``order_send``, after which the client id was
  looked up twice (positions, pending orders, deals) and nothing was found: safe to treat as not
  placed. The adapter never resends after a transport failure.
- ``OrderOutcomeUnknown``: a transport failure during ``order_send`` and the lookup could not
  tell (the terminal stayed unreachable or the order was still in flight). NEVER take it as "not
  placed": the executor keeps the reservation and resolves it by client id (reconciler).

Messages never contain secrets (the adapter never formats the password into any text).
"""
from __future__ import annotations


class BrokerError(Exception):
    """Base class: ``code`` is the MT5 retcode or last_error code (0 when not from MT5)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class BrokerUnavailable(BrokerError):
    """The terminal cannot be reached right now (IPC error, disconnect). Transient."""


class BrokerSetupError(BrokerError):
    """Connecting cannot work until the operator fixes the setup named in the message."""


class OrderRejected(BrokerError):
    """The request was refused and not placed. ``retcode`` is the server's (0 for a local check)."""

    def __init__(self, retcode: int, reason: str, *, request: dict | None = None,
                 attempts: int = 1, transient: bool = False) -> None:
        super().__init__(retcode, reason)
        self.retcode = retcode
        self.reason = reason
        self.request = dict(request or {})
        self.attempts = attempts
        self.transient = transient  # True when bounded transient retries were exhausted


class TradingDisabled(BrokerError):
    """Entries must stop until the operator acts; ``instruction`` says exactly what to do."""

    def __init__(self, code: int, message: str, instruction: str) -> None:
        super().__init__(code, f"{message}: {instruction}" if instruction not in message else message)
        self.instruction = instruction


class OrderNotPlaced(BrokerUnavailable):
    """Transport failure during order_send, verified by client-id lookup: nothing was placed."""

    def __init__(self, code: int, message: str, *, client_id: str) -> None:
        super().__init__(code, message)
        self.client_id = client_id


class OrderOutcomeUnknown(BrokerError):
    """Transport failure during order_send and the lookup could not tell whether it executed."""

    def __init__(self, code: int, message: str, *, client_id: str, request: dict | None = None) -> None:
        super().__init__(code, message)
        self.client_id = client_id
        self.request = dict(request or {})
