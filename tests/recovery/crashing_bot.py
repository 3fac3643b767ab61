"""``bot.py`` with test-only crash hooks: SIGKILL at a CHOSEN point of the trade path.

    python tests/recovery/crashing_bot.py run --config-dir ... --runtime-dir ... --no-notify

It imports ``bot``, patches production classes in THIS process only, then calls ``bot.main``.
No production module knows about any of it. Environment (read only here):

- ``BOT_CRASH_AT``: where the process kills itself (``os.kill(getpid(), SIGKILL)``):
  - ``before_send``: ``Mt5Broker.market_order`` is entered: the intent is journaled (fsynced),
    nothing has reached the broker;
  - ``after_send``: ``Mt5Broker.market_order`` returned: the broker filled the order (the
    simulated terminal's book is saved), the executor never processed the reply;
  - ``after_confirm``: the executor confirmed the position by ticket and hands the trade to
    ``RiskManager.confirm``, which would register it: killed before the registry is saved;
  - ``mid_state_write``: inside that registration, in the middle of the atomic write of
    ``trades_<strategy>.json``: the old file is already renamed to ``.bak``, the new one is
    written to its temporary file but not yet renamed into place;
  - ``after_close_send``: ``Mt5Broker.close_position`` returned (the broker closed the
    position), the executor never recorded the close.
- ``BOT_CRASH_NTH`` (default 1): the Nth occurrence at that point is killed.
- ``BOT_CRASH_STRATEGY``: only orders of this strategy count (default: any).
- ``BOT_INJECT_IDEAS``: a JSON list of ideas ``{symbol, side, strategy, sl_distance,
  tp_distance, meta}`` sent one after another through the running app's own executor
  (``BotApp.executor.open``) once the bot runs: deterministic entries for the tests, priced
  from a fresh quote, with the strategies' own entries switched off in the config.
- ``BOT_INJECT_GAP`` (default 0.3): wall seconds between two injected ideas.
- ``BOT_HOOK_DIR``: a folder for ``crash_marker.json`` (written and fsynced just before the
  kill: the point, the client id, the ticket when known) and ``injected.jsonl`` (the outcome
  of each injected idea that returned).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

PROJECT = Path(__file__).resolve().parents[2]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

CRASH_POINTS = ("before_send", "after_send", "after_confirm", "mid_state_write", "after_close_send")
STRATEGY_OF_CODE = {"ms": "micro_scalp", "rs": "range_scalp", "of": "order_flow"}


def strategy_of_client_id(client_id: str) -> str | None:
    return STRATEGY_OF_CODE.get(str(client_id).split("-", 1)[0])


class CrashHooks:
    """Counts the occurrences at the chosen point and kills the process at the Nth."""

    def __init__(self, point: str, nth: int = 1, strategy: str | None = None, hook_dir: Path | None = None,
                 kill: Callable[[], None] | None = None) -> None:
        if point not in CRASH_POINTS:
            raise ValueError(f"BOT_CRASH_AT={point!r}: expected one of {', '.join(CRASH_POINTS)}")
        if nth < 1:
            raise ValueError(f"BOT_CRASH_NTH must be at least 1, got {nth}")
        self.point = point
        self.nth = nth
        self.strategy = strategy
        self.hook_dir = hook_dir
        self.seen = 0
        self._kill = kill or (lambda: os.kill(os.getpid(), signal.SIGKILL))
        self._lock = threading.Lock()
        self._local = threading.local()

    def counts(self, strategy: str | None) -> bool:
        """One more occurrence at the point: is it the one to kill?"""
        if self.strategy is not None and strategy != self.strategy:
            return False
        with self._lock:
            self.seen += 1
            return self.seen == self.nth

    def die(self, **detail: Any) -> None:
        """Write the marker (fsynced: a SIGKILL follows), then SIGKILL this process."""
        if self.hook_dir is not None:
            record = {"point": self.point, "nth": self.nth, "pid": os.getpid(), "at": time.time(), **detail}
            path = Path(self.hook_dir) / "crash_marker.json"
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(record, default=str))
                handle.flush()
                os.fsync(handle.fileno())
        self._kill()

    # ------------------------------------------------------------------ installation
    def install(self) -> None:
        """Patch the production classes (this process only) for the chosen point."""
        import execution.mt5 as mt5
        import execution.risk as risk
        import state.store as store

        hooks = self
        if self.point in ("before_send", "after_send"):
            original_order = mt5.Mt5Broker.market_order

            def market_order(broker: Any, symbol: str, side: str, volume: float, sl: Any, tp: Any, magic: int,
                             client_id: str, *args: Any, **kwargs: Any) -> Any:
                strategy = strategy_of_client_id(client_id)
                if hooks.point == "before_send" and hooks.counts(strategy):
                    hooks.die(client_id=client_id, symbol=symbol, side=side, strategy=strategy)
                result = original_order(broker, symbol, side, volume, sl, tp, magic, client_id, *args, **kwargs)
                if hooks.point == "after_send" and hooks.counts(strategy):
                    hooks.die(client_id=client_id, symbol=symbol, side=side, strategy=strategy,
                              ticket=int(result.position or 0))
                return result

            mt5.Mt5Broker.market_order = market_order  # type: ignore[method-assign]
        elif self.point in ("after_confirm", "mid_state_write"):
            original_confirm = risk.RiskManager.confirm

            def confirm(manager: Any, reservation: Any, filled_at: Any, trade: Any = None) -> None:
                if trade is not None and hooks.counts(trade.strategy):
                    detail = dict(client_id=trade.client_id, ticket=trade.ticket, symbol=trade.symbol,
                                  strategy=trade.strategy)
                    if hooks.point == "after_confirm":
                        hooks.die(**detail)
                    hooks._local.armed = (f"trades_{trade.strategy}.json", detail)
                try:
                    original_confirm(manager, reservation, filled_at, trade)
                finally:
                    hooks._local.armed = None

            original_replace = store._replace_with_retry

            def replace_with_retry(src: Path, dst: Path, *args: Any, **kwargs: Any) -> None:
                armed = getattr(hooks._local, "armed", None)
                if armed is not None and Path(dst).name == armed[0]:
                    leftovers = sorted(p.name for p in Path(dst).parent.glob(armed[0] + "*"))
                    hooks.die(**armed[1], files=leftovers)  # the old file is .bak, the new one a temp file
                original_replace(src, dst, *args, **kwargs)

            risk.RiskManager.confirm = confirm  # type: ignore[method-assign]
            store._replace_with_retry = replace_with_retry
        elif self.point == "after_close_send":
            original_close = mt5.Mt5Broker.close_position

            def close_position(broker: Any, ticket: int, *args: Any, **kwargs: Any) -> Any:
                result = original_close(broker, ticket, *args, **kwargs)
                client_id = kwargs.get("client_id") or (args[2] if len(args) > 2 else "")
                if hooks.counts(strategy_of_client_id(client_id)):
                    hooks.die(ticket=ticket, client_id=client_id, strategy=strategy_of_client_id(client_id))
                return result

            mt5.Mt5Broker.close_position = close_position  # type: ignore[method-assign]


# ------------------------------------------------------------------------------- injected ideas
def build_idea(spec: dict[str, Any], quote: Any) -> Any:
    """A TradeIdea priced from ``quote`` with stops ``sl_distance``/``tp_distance`` away."""
    from engines.types import TradeIdea

    side = spec["side"]
    entry = quote.ask if side == "buy" else quote.bid
    sign = 1 if side == "buy" else -1
    return TradeIdea(spec["symbol"], side, entry, entry - sign * float(spec["sl_distance"]),
                     entry + sign * float(spec["tp_distance"]), spec["strategy"],
                     (spec.get("reason") or "injected by tests/recovery/crashing_bot.py",), dict(spec.get("meta") or {}))


# Refusals of the replayed market's moment, not of the idea: the quote is between two recorded
# ticks (stale), or it moved past the idea's entry tolerance between the read and the check.
# The executor is right to refuse; the injector prices the idea again a moment later.
MARKET_MOMENT_SKIPS = ("stale quote", "price moved")
MARKET_MOMENT_RETRIES = 20


def inject_ideas(app: Any, ideas: list[dict[str, Any]], gap: float, hook_dir: Path | None) -> None:
    """Send ``ideas`` through ``app.executor`` once the app runs (a thread of the bot process)."""
    deadline = time.monotonic() + 60.0
    while app.health.status != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    for spec in ideas:
        for _attempt in range(MARKET_MOMENT_RETRIES + 1):
            quote = app.broker.quote(spec["symbol"])
            idea = build_idea(spec, quote)
            outcome = app.executor.open(idea, created_at=app.market_clock.now())
            if not (outcome.status == "skipped" and str(outcome.reason).startswith(MARKET_MOMENT_SKIPS)):
                break
            time.sleep(0.1)
        if hook_dir is not None:
            with open(Path(hook_dir) / "injected.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"symbol": idea.symbol, "strategy": idea.strategy, "status": outcome.status,
                                         "reason": outcome.reason, "client_id": outcome.client_id,
                                         "ticket": outcome.trade.ticket if outcome.trade else None}) + "\n")
        time.sleep(gap)


def install_injection(ideas: list[dict[str, Any]], gap: float, hook_dir: Path | None) -> None:
    import bot

    original_run = bot.BotApp.run

    def run(app: Any, duration: float | None = None) -> int:
        threading.Thread(target=inject_ideas, args=(app, ideas, gap, hook_dir), name="test-inject",
                         daemon=True).start()
        return original_run(app, duration)

    bot.BotApp.run = run  # type: ignore[method-assign]


def install_from_env(environ: dict[str, str] | None = None) -> CrashHooks | None:
    """Install what the environment asks for; returns the crash hooks (None without BOT_CRASH_AT)."""
    env = os.environ if environ is None else environ
    hook_dir = Path(env["BOT_HOOK_DIR"]) if env.get("BOT_HOOK_DIR") else None
    hooks = None
    if env.get("BOT_CRASH_AT"):
        hooks = CrashHooks(env["BOT_CRASH_AT"], int(env.get("BOT_CRASH_NTH", "1")),
                           env.get("BOT_CRASH_STRATEGY") or None, hook_dir)
        hooks.install()
    if env.get("BOT_INJECT_IDEAS"):
        install_injection(json.loads(env["BOT_INJECT_IDEAS"]), float(env.get("BOT_INJECT_GAP", "0.3")), hook_dir)
    return hooks


def main(argv: list[str] | None = None) -> int:
    import bot

    install_from_env()
    return bot.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
