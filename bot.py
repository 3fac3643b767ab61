"""MT5 scalping bot: the composition root.

This is the only place that builds long-lived objects and starts threads. Everything else is
given what it needs. Run ``python bot.py --help`` for the commands.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

__version__ = "0.1.0"

PROJECT_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG_DIR = PROJECT_DIR / "config"
DEFAULT_RUNTIME_DIR = PROJECT_DIR / "runtime"

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("bot")


# --------------------------------------------------------------------------- helpers
def _console_safe() -> None:
    """Never crash on a Windows console that cannot print a character."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[attr-defined]
        except (AttributeError, ValueError):
            pass


def _print_problems(problems: Sequence[object]) -> None:
    for problem in problems:
        print(str(problem), file=sys.stderr)


def _load_config_or_exit(config_dir: Path):
    from config.loader import ConfigError, load_config
    try:
        return load_config(config_dir)
    except ConfigError as exc:
        print(f"config in {config_dir} is invalid ({len(exc.problems)} problem(s)):", file=sys.stderr)
        _print_problems(exc.problems)
        return None


def _env_files(config_dir: Path) -> list[Path]:
    """``.env`` next to the config files first, then in the project folder."""
    return [Path(config_dir) / ".env", PROJECT_DIR / ".env"]


# --------------------------------------------------------------------------- commands
def cmd_check_config(args: argparse.Namespace) -> int:
    snapshot = _load_config_or_exit(args.config_dir)
    if snapshot is None:
        return EXIT_USAGE
    from config.secrets import load_secrets
    try:
        load_secrets(_env_files(args.config_dir))
    except ValueError as exc:
        print(f".env: {exc}", file=sys.stderr)
        return EXIT_USAGE
    bot = snapshot.bot
    print(f"config OK: mode={bot.mode} broker={bot.broker} symbols={','.join(bot.symbols)}")
    for name in ("micro_scalp", "range_scalp", "order_flow"):
        strategy = snapshot.strategy(name)
        state = "on" if strategy.enabled else "off"
        print(f"  {name}: {state}, every {strategy.interval_seconds:g} s, "
              f"symbols {','.join(strategy.active_symbols()) or '-'}")
    return EXIT_OK


def cmd_notify_test(args: argparse.Namespace) -> int:
    from config.secrets import load_secrets
    from notify.webhook_check import all_ok, format_results, send_test_messages
    try:
        secrets = load_secrets(_env_files(args.config_dir))
    except ValueError as exc:
        print(f".env: {exc}", file=sys.stderr)
        return EXIT_USAGE
    results = send_test_messages(secrets, version=__version__)
    print(format_results(results))
    return EXIT_OK if all_ok(results) else EXIT_FAILURE


def cmd_flow_bars(args: argparse.Namespace) -> int:
    from backtest.flow_bars import main as flow_bars_main
    argv = ["--trades", str(args.trades), "--timeframe", args.timeframe]
    if args.out:
        argv += ["--out", str(args.out)]
    return flow_bars_main(argv)


def cmd_backtest(args: argparse.Namespace) -> int:
    from backtest.cli import main as backtest_main
    return backtest_main(args.backtest_args)


def cmd_status(args: argparse.Namespace) -> int:
    from monitors.status_view import collect_status, render_status
    status = collect_status(args.runtime_dir)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True, default=str))
    else:
        print(render_status(status))
    return EXIT_OK if status.get("found") else EXIT_FAILURE


def cmd_run(args: argparse.Namespace) -> int:
    snapshot = _load_config_or_exit(args.config_dir)
    if snapshot is None:
        print("refusing to start: fix the config (python bot.py check-config shows the same list)",
              file=sys.stderr)
        return EXIT_USAGE
    from config.secrets import load_secrets
    try:
        secrets = load_secrets(_env_files(args.config_dir))
    except ValueError as exc:
        print(f"refusing to start: .env: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from state.instance_lock import AlreadyRunning, InstanceLock
    lock = InstanceLock(args.runtime_dir)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from execution.errors import BrokerError
    try:
        app = BotApp(snapshot, secrets, args.config_dir, args.runtime_dir, notify=not args.no_notify)
        return app.run(duration=args.duration)
    except BrokerError as exc:
        log.critical("cannot start: broker: %s", exc)
        print(f"cannot start: broker: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception:
        log.critical("the bot failed", exc_info=True)
        return EXIT_FAILURE
    finally:
        lock.release()


def _next_open_market(now: datetime) -> datetime:
    """A new simulated market starts now, unless that is a weekend (FX and gold closed from
    Friday 21:00 to Sunday 22:00 UTC): then at Monday 07:00 UTC, so a demo shows markets moving."""
    weekday, hour = now.weekday(), now.hour
    closed = (weekday == 4 and hour >= 21) or weekday == 5 or (weekday == 6 and hour < 22)
    if not closed:
        return now
    monday = (now + timedelta(days=7 - weekday)).replace(hour=7, minute=0, second=0, microsecond=0)
    return monday


# --------------------------------------------------------------------------- the running bot
class BotApp:
    """Wires the threads together, supervises them and shuts them down in order."""

    def __init__(self, snapshot, secrets, config_dir: Path, runtime_dir: Path, notify: bool = True) -> None:
        from config.watcher import ConfigHolder, ConfigWatcher
        from monitors.clock import SystemClock
        from monitors.health import HealthReporter
        from monitors.logsetup import set_level, setup_logging
        from monitors.supervisor import JobSpec, Supervisor
        from state.journal import Journal
        from state.store import StateStore
        from state.writer import StateWriter

        self.runtime_dir = Path(runtime_dir)
        self.config_dir = Path(config_dir)
        self.available_monitors: set[str] = set()
        self.stop_event = threading.Event()
        self.clock = SystemClock()
        self.started_at = self.clock.now()
        logging_cfg = snapshot.bot.logging
        setup_logging(self.runtime_dir / "logs", logging_cfg.level, logging_cfg.console,
                      int(logging_cfg.file_max_mb * 1_000_000), logging_cfg.file_backups,
                      secrets.values())
        self.secrets = secrets
        self.holder = ConfigHolder(snapshot)
        self.holder.on_change(lambda old, new, changes: set_level(new.bot.logging.level))
        self.store = StateStore(self.runtime_dir / "state")
        self.writer = StateWriter(self.store)
        self.journal = Journal(self.runtime_dir / "journal.jsonl", now=self.clock.now)
        self.journal.append("start", mode=snapshot.bot.mode, broker=snapshot.bot.broker, version=__version__,
                            symbols=list(snapshot.bot.symbols))
        self.watcher = ConfigWatcher(self.config_dir, self.holder, self.clock,
                                     snapshot.bot.runtime.config_settle_seconds, self.stop_event)
        self.supervisor = Supervisor(self.clock, lambda: self.holder.current, self._on_supervisor_event)
        # (the market clock is set on the supervisor once the broker is built: see _build_trading)
        self.supervisor.add(JobSpec("state-writer", service=self.writer))
        self.supervisor.add(JobSpec("config-watcher", make_monitor=lambda: self.watcher,
                                    health=self.watcher.health))
        self._build_notifier(snapshot, notify)  # first, so start-up recovery events are announced
        self._build_trading(snapshot)
        self.health = HealthReporter(self.runtime_dir, self.clock, __version__, self.started_at)
        self.health.add("mode", lambda: {"mode": self.holder.current.bot.mode,
                                         "broker": self.holder.current.bot.broker})
        self.health.add("config", self.watcher.health)
        self.health.add("threads", self.supervisor.health)
        self.health.add("strategies", self._strategies_health)
        self.health.add("state", lambda: {"writes": self.store.writes, "pending": self.writer.pending(),
                                          "errors": self.writer.errors, "last_error": self.writer.last_error,
                                          "journal_lines": self.journal.lines_written})
        self.health.add("broker", self.broker.connection_state)
        self.health.add("account", self._account_health)
        self.health.add("market", lambda: {"market_time": self.market_clock.now().isoformat(),
                                           **self.bar_feed.health()})
        self.health.add("execution", lambda: {**self.executor.health(), "risk": self.risk.health()})
        self.health.add("positions", self._positions_health)
        self.health.add("reconciler", self.reconciler.health)
        self.health.add("trading", self._trading_health)
        self.health.add("results_today", self._results_today)
        self.health.add("notifier", self.notifier.stats)

    # ------------------------------------------------------------------ trading stack
    def _build_trading(self, snapshot) -> None:
        """Broker (MT5 adapter over the real module or the simulated terminal), market clock,
        bar feed, registry, risk and executor."""
        from execution.mt5 import Mt5Broker
        from execution.risk import RiskManager
        from feeds.bar_feed import BarFeed
        from monitors.supervisor import JobSpec
        from state.registry import TradeRegistry

        bot = snapshot.bot
        module, self.market_clock = self._broker_module(snapshot)
        self.broker = Mt5Broker(module, self.secrets, bot, self.market_clock)
        if hasattr(module, "follow_server_offset"):  # the paper book shows the adapter's server time
            module.follow_server_offset(self.broker.server_utc_offset)
        self.broker.connect()
        self.registry = TradeRegistry(self.store)
        self.risk = RiskManager(lambda: self.holder.current.bot.risk, self.registry, self.store)
        self.supervisor.loop_clock = self.market_clock
        # 1500 M1 bars: a full session for the micro-scalp VWAP; 720+ M5 bars for range detection
        self.bar_feed = BarFeed(self.broker, self.clock, self._wanted_bars, depth=1500, market_log_seconds=15)
        self.supervisor.add(JobSpec("bar-feed", make_monitor=lambda: self.bar_feed, health=self.bar_feed.health))
        self._build_reliability()
        self._build_order_flow(snapshot)
        self._build_micro_scalp(snapshot)
        self._build_range_scalp(snapshot)

    def _build_reliability(self) -> None:
        """Circuit breaker around the executor's broker, trading state, executor, reconciler; the
        start-up reconciliation runs here, before any monitor exists (nothing can open a trade)."""
        from execution.breaker import BreakerBroker, CircuitBreaker
        from execution.executor import Executor
        from execution.reconciler import Reconciler
        from execution.trading_state import STREAK_TRADES, TradingGuard
        from monitors.supervisor import JobSpec

        reliability = lambda: self.holder.current.bot.reliability  # noqa: E731
        self.breaker = CircuitBreaker("broker", self.market_clock, reliability, events=self._on_trade_event,
                                      journal=self.journal)
        self.trade_broker = BreakerBroker(self.broker, self.breaker)
        self.guard = TradingGuard(self.store, reliability, self.market_clock, journal=self.journal,
                                  events=self._on_trade_event, account=self.trade_broker.account,
                                  closed_trades=lambda: self.registry.recent_closed(STREAK_TRADES),
                                  bar_times=self.bar_feed.last_bar_times,
                                  breaker=self.breaker)
        self.executor = Executor(self.trade_broker, self.registry, self.risk, self.journal,
                                 lambda: self.holder.current, self.market_clock, events=self._on_trade_event,
                                 trading_state=self.guard)
        self.reconciler = Reconciler(self.trade_broker, self.registry, self.journal, lambda: self.holder.current,
                                     self.market_clock, executor=self.executor, events=self._on_trade_event,
                                     trading_state=self.guard)
        self.breaker.subscribe(self.reconciler.on_breaker_change)
        self.executor.on_fill = self.reconciler.request
        report = self.reconciler.run("startup")
        log.info("start-up reconciliation: %s", report.summary())
        self.guard.step()
        self.supervisor.add(JobSpec("reconciler", make_monitor=lambda: self.reconciler, health=self.reconciler.health))
        self.supervisor.add(JobSpec("trading-guard", make_monitor=lambda: self.guard, health=self.guard.health))

    def _build_micro_scalp(self, snapshot) -> None:
        from monitors.micro_scalp import MicroScalpMonitor
        from monitors.micro_scalp_state import MicroScalpState
        from monitors.news_file import NewsFile
        from monitors.supervisor import JobSpec

        # Cooldowns, breaker, regimes and statistics outlive a monitor instance (restarts, off/on).
        self.micro_state = MicroScalpState(snapshot.micro_scalp.summary_minutes)
        self.news_file = NewsFile(self.config_dir / "news.json")
        self.micro_monitor = None

        def make_micro():
            self.micro_monitor = MicroScalpMonitor(
                self.holder, self.bar_feed, self.broker, self.executor, self.registry, news=self.news_file,
                notify=self._on_trade_event, state=self.micro_state, store=self.store, save=self.writer.submit)
            return self.micro_monitor

        self.available_monitors.add("micro_scalp")
        # Always supervised: with the strategy off it opens nothing but still trails and time-exits.
        self.supervisor.add(JobSpec("micro-scalp", make_monitor=make_micro, market_time=True,
                                    health=lambda: self.micro_monitor.health() if self.micro_monitor else {}))

    def _build_range_scalp(self, snapshot) -> None:
        from monitors.range_scalp import RangeScalpMonitor
        from monitors.supervisor import JobSpec

        self.range_monitor = RangeScalpMonitor(
            self.holder, self.bar_feed, self.broker, self.executor, self.registry, self.market_clock,
            journal=self.journal, store=self.store, notify=self._on_trade_event, news=self.news_file)
        self.range_monitor.recover(self.market_clock.now())  # before any monitor may open a trade
        self.available_monitors.add("range_scalp")
        self.supervisor.add(JobSpec("range-scalp", make_monitor=lambda: self.range_monitor,
                                    health=self.range_monitor.health, market_time=True))

    def _build_order_flow(self, snapshot) -> None:
        """The Binance tape (only with a live broker: the simulated terminal replays no exchange
        tape, and tests never reach the internet), the MT5 tick proxy and the order-flow monitor."""
        from feeds.binance_flow import build_order_flow_feed
        from feeds.tick_proxy import TickProxyFeed
        from monitors.order_flow import OrderFlowMonitor
        from monitors.supervisor import JobSpec

        of = snapshot.order_flow
        self.binance_stream = None
        flow = None
        if snapshot.bot.broker == "mt5":
            flow, self.binance_stream = build_order_flow_feed(of, store=self.store, clock=self.clock)
        proxy = TickProxyFeed.from_config(of.proxy, self.broker, self.market_clock) if of.proxy.enabled else None
        self.order_flow_monitor = OrderFlowMonitor(
            self.holder, self.bar_feed, self.broker, self.executor, self.registry, self.market_clock,
            flow=flow, proxy=proxy, flow_clock=self.clock, notify=self._on_trade_event)
        self.available_monitors.add("order_flow")
        # Always supervised: with the strategy off it opens nothing but still manages its exits.
        self.supervisor.add(JobSpec("order-flow", make_monitor=lambda: self.order_flow_monitor,
                                    health=self.order_flow_monitor.health, market_time=True))
        if self.binance_stream is not None:
            self.supervisor.add(JobSpec("binance-stream", service=self.binance_stream,
                                        health=self.binance_stream.health))

    def _broker_module(self, snapshot):
        """The MetaTrader5 module (Windows, broker mt5) or the simulated terminal, and the clock
        of market time (the wall clock live; a scaled clock replaying recorded data in sim)."""
        bot = snapshot.bot
        if bot.broker == "mt5":
            try:
                import MetaTrader5 as module  # type: ignore[import-not-found]
            except ImportError:
                raise SystemExit("broker 'mt5' needs the MetaTrader5 package, which exists for Windows only; "
                                 "use broker 'sim' on this machine") from None
            if bot.mode == "paper":
                from execution.paper_terminal import PaperTerminal
                paper = PaperTerminal(module, self.clock, self.runtime_dir / "paper_book.json",
                                      starting_balance=bot.sim.starting_balance,
                                      slippage_points=bot.sim.slippage_points)
                log.warning("paper mode with broker mt5: real MT5 quotes, simulated fills in %s; "
                            "no order reaches the account", paper.book_path)
                return paper, self.clock
            log.warning("LIVE TRADING on the MT5 account: real orders, real money")
            return module, self.clock
        from execution.simterminal.factory import build_from_config, replay_start
        from monitors.clock import ScaledClock
        sim = bot.sim
        wall_now = self.clock.now()
        start = replay_start(sim, self.runtime_dir, wall_now)  # resumes the book's market time
        if start == wall_now:
            start = _next_open_market(wall_now)
        market_clock = ScaledClock(start, sim.speed)
        # The simulated broker lists its instruments under their broker names (without the suffix
        # it appends itself), so two config names may map to one instrument.
        instruments = sorted({bot.broker_symbol(name).removesuffix(sim.symbol_suffix) if sim.symbol_suffix
                              else bot.broker_symbol(name) for name in bot.symbols})
        terminal = build_from_config(sim, market_clock, PROJECT_DIR, self.runtime_dir, instruments)
        log.info("simulated terminal: replaying %s at %gx from %s (market time)", sim.data_dir, sim.speed,
                 start.strftime("%Y-%m-%d %H:%M"))
        return terminal, market_clock

    def _wanted_bars(self):
        """(symbol, timeframe) pairs the enabled strategies read."""
        snapshot = self.holder.current
        wanted = []
        for name, timeframes in (("micro_scalp", ("M1",)), ("range_scalp", ("M5", "H1")), ("order_flow", ("M1",))):
            for symbol in snapshot.strategy(name).active_symbols():
                wanted += [(symbol, tf) for tf in timeframes if (symbol, tf) not in wanted]
        return wanted

    def _on_trade_event(self, kind: str, data: dict[str, Any]) -> None:
        bridge = getattr(self, "bridge", None)
        if bridge is not None:
            bridge.on_trade_event(kind, data)

    def _build_notifier(self, snapshot, enabled: bool) -> None:
        """Discord: on a real-time clock even in a sim replay (Discord's limits are real seconds)."""
        from monitors.clock import SystemClock
        from monitors.supervisor import JobSpec
        from notify.bridge import NotifyBridge
        from notify.daily import DailySummarySchedule
        from notify.notifier import Notifier

        config = snapshot.bot.notifications
        self.notifier = Notifier(self.secrets, config, SystemClock(), enabled=enabled and config.enabled)
        schedule = DailySummarySchedule(config.daily_summary_utc, self.store)
        self.bridge = NotifyBridge(
            self.notifier, lambda: self.holder.current, lambda: self.market_clock.now(), schedule,
            closed_trades=lambda: [t.to_json() for t in self.registry.closed_trades() if t.pnl is not None],
            currency=lambda: self.holder.current.bot.sim.currency)
        self.holder.on_change(self.bridge.on_config_change)
        self.holder.on_reject(self.bridge.on_config_reject)
        self.supervisor.add(JobSpec("notifier", service=self.notifier))

    def _account_health(self) -> dict[str, Any]:
        account = self.broker.account()
        return {"login": account.login, "currency": account.currency, "balance": account.balance,
                "equity": account.equity, "margin": account.margin, "margin_free": account.margin_free,
                "leverage": account.leverage, "trade_allowed": account.trade_allowed}

    def _trading_health(self) -> dict[str, Any]:
        guard = self.guard.health()
        blocked = self.broker.entries_blocked()
        if blocked and guard["state"] == "ACTIVE":
            guard.update(state="ENTRIES BLOCKED", reason=blocked)
        return {**guard, "reconciliation": self.reconciler.summary(), "breaker": self.breaker.health()}

    def _results_today(self) -> dict[str, Any]:
        """Per strategy, trades closed since 00:00 UTC (market time): count, wins, P&L, average R."""
        day = self.market_clock.now().date().isoformat()
        out: dict[str, Any] = {}
        for trade in self.registry.closed_trades():
            if not (trade.closed_at or "").startswith(day):
                continue
            row = out.setdefault(trade.strategy, {"trades": 0, "wins": 0, "pnl": 0.0, "r_sum": 0.0, "r_count": 0})
            row["trades"] += 1
            row["wins"] += 1 if (trade.pnl or 0) > 0 else 0
            row["pnl"] = round(row["pnl"] + (trade.pnl or 0.0), 2)
            if trade.r is not None:
                row["r_sum"] += trade.r
                row["r_count"] += 1
        for row in out.values():
            row["avg_r"] = round(row.pop("r_sum") / row["r_count"], 2) if row["r_count"] else None
            row.pop("r_count")
        return out

    def _positions_health(self) -> dict[str, Any]:
        magics = {self.holder.current.bot.execution.magic_base + i for i in (1, 2, 3)}
        broker_positions = [
            {"ticket": p.ticket, "symbol": p.symbol, "side": p.side, "volume": p.volume, "price_open": p.price_open,
             "sl": p.sl, "tp": p.tp, "profit": p.profit, "magic": p.magic, "comment": p.comment}
            for p in self.broker.positions() if p.magic in magics]
        return {"registry": self.registry.snapshot(), "broker": broker_positions}

    def _on_supervisor_event(self, kind: str, data: dict[str, Any]) -> None:
        self.journal.append(kind, reason=data.get("error"), **data)
        bridge = getattr(self, "bridge", None)
        if bridge is not None:
            bridge.on_supervisor_event(kind, data)

    def _strategies_health(self) -> dict[str, Any]:
        snapshot = self.holder.current
        out = {}
        for name in ("micro_scalp", "range_scalp", "order_flow"):
            strategy = snapshot.strategy(name)
            available = name in self.available_monitors
            out[name] = {"enabled": strategy.enabled, "symbols": strategy.active_symbols(), "available": available,
                         "note": "" if available else "strategy monitor not available yet"}
        return out

    def _install_signals(self) -> None:
        def handler(signum: int, frame: object) -> None:
            log.info("signal %s received: shutting down", signal.Signals(signum).name)
            self.stop_event.set()

        for name in ("SIGINT", "SIGTERM", "SIGBREAK"):  # SIGBREAK: CTRL_BREAK on Windows
            sig = getattr(signal, name, None)
            if sig is not None:
                try:
                    signal.signal(sig, handler)
                except (ValueError, OSError):  # not the main thread, or not settable here
                    pass

    def run(self, duration: float | None = None) -> int:
        snapshot = self.holder.current
        bot = snapshot.bot
        log.info("MT5 scalping bot %s starting: mode=%s broker=%s symbols=%s runtime=%s", __version__,
                 bot.mode, bot.broker, ",".join(bot.symbols), self.runtime_dir)
        for name in ("micro_scalp", "range_scalp", "order_flow"):
            if name not in self.available_monitors:
                log.warning("%s monitor: not available yet (its strategy issue has not landed); "
                            "the broker, bar feed and executor run without it", name)
        self._install_signals()
        self.supervisor.check()  # start the threads (the notifier among them) before announcing
        self.bridge.started(snapshot, __version__, recovered=len(self.registry.open_trades()))
        deadline = None if duration is None else time.monotonic() + duration
        self.health.status = "running"
        try:
            while not self.stop_event.is_set():
                self.supervisor.check()
                self.bridge.watch_broker(self.broker.connection_state(), bot.broker)
                self.bridge.daily_summary_if_due()
                self.health.write()
                interval = self.holder.current.bot.runtime.health_interval_seconds
                wake = time.monotonic() + interval
                if deadline is not None:
                    wake = min(wake, deadline)
                # short slices: on Windows a long wait is not interrupted by Ctrl+C
                while not self.stop_event.is_set() and time.monotonic() < wake:
                    self.stop_event.wait(min(0.25, max(0.0, wake - time.monotonic())))
                if deadline is not None and time.monotonic() >= deadline:
                    log.info("run duration of %.0f s reached: shutting down", duration)
                    break
        finally:
            self.shutdown()
        return EXIT_OK

    def shutdown(self) -> None:
        timeout = self.holder.current.bot.runtime.shutdown_timeout_seconds
        self.health.status = "stopping"
        self.stop_event.set()
        self.bridge.stopped(self.holder.current, __version__, "shutdown", len(self.registry.open_trades()))
        self.notifier.stop(min(3.0, timeout / 2))
        self.supervisor.stop_all(timeout / 2)
        self.writer.flush()
        self.journal.append("stop", reason="shutdown")
        self.journal.close()
        self.health.status = "stopped"
        self.health.write()
        try:
            self.broker.shutdown()
        except Exception as exc:
            log.warning("broker shutdown: %s", exc)
        log.info("stopped cleanly; open positions stay with the broker and are recovered on the next start")


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bot.py", description="MT5 scalping bot")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the bot until Ctrl+C, SIGTERM or --duration")
    run.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR)
    run.add_argument("--runtime-dir", type=Path, default=DEFAULT_RUNTIME_DIR)
    run.add_argument("--duration", type=_positive_float, default=None, metavar="SECONDS")
    run.add_argument("--no-notify", action="store_true", help="send no Discord notifications")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate every config file")
    check.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR)
    check.set_defaults(func=cmd_check_config)

    notify_test = sub.add_parser("notify-test", help="send one test message to each configured Discord webhook")
    notify_test.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR)
    notify_test.set_defaults(func=cmd_notify_test)

    flow = sub.add_parser("flow-bars", help="replay a recorded trades file into order-flow bars (CSV)")
    flow.add_argument("--trades", type=Path, required=True, help="Binance aggTrades or trades file")
    flow.add_argument("--timeframe", default="1m", help="bar length, e.g. 1m, 5m (default 1m)")
    flow.add_argument("--out", type=Path, default=None, help="CSV file to write (default: standard output)")
    flow.set_defaults(func=cmd_flow_bars)

    backtest = sub.add_parser(
        "backtest", add_help=False,
        help="run the live monitors, executor and risk manager over recorded data on a simulated clock "
             "(python bot.py backtest --help for its options)")
    backtest.add_argument("backtest_args", nargs=argparse.REMAINDER)
    backtest.set_defaults(func=cmd_backtest)

    status = sub.add_parser("status", help="show the bot's state from its runtime files")
    status.add_argument("--runtime-dir", type=Path, default=DEFAULT_RUNTIME_DIR)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    _console_safe()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("--") and argv[0] not in ("--version", "-h", "--help"):
        argv = ["run", *argv]  # `python bot.py` is `python bot.py run`
    if argv[0] == "backtest":  # its own parser takes every option after the word
        return cmd_backtest(argparse.Namespace(backtest_args=argv[1:]))
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *argv])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
