"""Files become symbols with their timezone; recordings become segments of market time."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from backtest.data import WEEK_S, BacktestDataError, FeedPlan, plan_segments, resolve_feeds
from feeds.readers import DataFileError
from tests.backtest.conftest import BTC_M1, DATA, EUR_M1, EUR_TICKS, SPOT_TRADES, XAU_M1, XAU_M5, real_file, slice_lines


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_bundled_files_take_their_spec_symbol_format_and_timezone():
    feeds, _ = resolve_feeds([str(real_file(EUR_M1)), str(real_file(BTC_M1))])
    by_symbol = {f.symbol: f for f in feeds}
    assert set(by_symbol) == {"EURUSD", "BTCUSD"}  # BTCPERP_M1...csv is the bundled BTCUSD feed
    eur = by_symbol["EURUSD"]
    assert eur.format == "histdata_nt" and eur.utc_offset_hours == -5
    assert eur.first == utc(2015, 2, 1, 22, 0)  # 17:00 EST is 22:00 UTC (no daylight saving)
    assert eur.bar_seconds == 60
    assert eur.spec["feed"]["file"] == str(EUR_M1.resolve()) and eur.spec["digits"] == 5
    assert by_symbol["BTCUSD"].first == utc(2022, 1, 16, 0, 0)


def test_a_spec_folder_gives_its_symbols_and_symbols_filters_them():
    feeds, _ = resolve_feeds([str(DATA)])
    assert [f.symbol for f in feeds] == ["EURUSD", "BTCUSD", "XAUUSD"]  # by first recorded instant
    feeds, _ = resolve_feeds([str(DATA)], ["xauusd"])
    assert [f.symbol for f in feeds] == ["XAUUSD"]
    with pytest.raises(BacktestDataError, match="--symbols GBPUSD: not in the data"):
        resolve_feeds([str(DATA)], ["GBPUSD"])


def test_a_named_file_an_mt5_export_and_its_offset(tmp_path):
    slice_lines(XAU_M5, tmp_path / "1gold.csv", 2, 400, header=True)
    with pytest.raises(BacktestDataError, match="pass it as SYMBOL="):
        resolve_feeds([str(tmp_path / "1gold.csv")])
    feeds, notes = resolve_feeds([f"XAUUSD={tmp_path / '1gold.csv'}"], fmt="mt5", utc_offset_hours=3)
    feed = feeds[0]
    assert feed.symbol == "XAUUSD" and feed.format == "mt5" and feed.bar_seconds == 300
    assert feed.first == utc(2026, 4, 24, 5, 15)  # 08:15 server time at UTC+3
    assert any("5-minute bars" in n for n in feed.notes)
    feeds, _ = resolve_feeds([f"XAUUSD={tmp_path / '1gold.csv'}"], fmt="mt5")
    assert any("broker server time, read as UTC" in n for n in feeds[0].notes)


def test_unknown_symbol_needs_a_contract_spec(tmp_path):
    path = slice_lines(XAU_M1, tmp_path / "GOLDX_M1.csv", 2, 100, header=True)
    with pytest.raises(BacktestDataError, match=r"GOLDX .*no contract specification.*--specs FILE"):
        resolve_feeds([str(path)])


def test_a_plain_folder_skips_trade_files_and_reads_ticks(tmp_path):
    folder = tmp_path / "mixed"
    slice_lines(EUR_TICKS, folder / "EURUSD_ticks.csv", 1, 2000, header=False)
    (folder / "trades.csv").write_bytes(real_file(SPOT_TRADES).read_bytes()[:20000].rsplit(b"\n", 1)[0] + b"\n")
    (folder / "README.md").write_text("not data")
    feeds, notes = resolve_feeds([str(folder)])
    assert [f.symbol for f in feeds] == ["EURUSD"]
    feed = feeds[0]
    assert feed.kind == "ticks" and feed.format == "histdata_ticks"
    assert feed.first == utc(2020, 1, 1, 22, 0, 1)  # 17:00:00.065 EST, in whole seconds rounded up
    assert feed.notes == ()  # a short file is replayed whole
    assert np.all(np.diff(feed.closes) > 0) and np.all(feed.closes % 5 == 0)  # a 5 s step grid
    assert any("trades.csv: Binance trades" in n for n in notes)


def test_a_bad_data_file_is_named_with_its_line(tmp_path):
    path = slice_lines(XAU_M1, tmp_path / "XAUUSD_M1.csv", 2, 50, header=True)
    lines = path.read_text().splitlines()
    lines[10] = lines[10].replace(",", ",x", 1)  # line 11: the open price is not a number
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError) as info:
        resolve_feeds([str(path)])
    assert info.value.line == 11 and info.value.path == path and "not a number" in str(info.value)


def test_missing_paths_and_duplicates():
    with pytest.raises(BacktestDataError, match="no such file or folder"):
        resolve_feeds(["/nonexistent/file.csv"])
    with pytest.raises(BacktestDataError, match="comes from two files"):
        resolve_feeds([str(DATA), str(real_file(XAU_M1))])


# ---------------------------------------------------------------------------------------------
# segments (FeedPlans built by hand: the rule is about times only)

def _feed(symbol: str, first: int, minutes: int, gap_at: int | None = None) -> FeedPlan:
    closes = first + 60 * np.arange(1, minutes + 1, dtype=np.int64)
    if gap_at is not None:
        closes = np.r_[closes[:gap_at], closes[gap_at + 60:]]
    end = int(closes[-1])
    weeks = max(1, round((end - first) / WEEK_S))
    return FeedPlan(symbol, Path(f"{symbol}.csv"), "bars", "ohlc", None, 60, first, end,
                    min(end, first + weeks * WEEK_S), closes, {})


T0 = int(utc(2023, 4, 17, 0, 0).timestamp())


def test_overlapping_recordings_share_a_segment_and_separate_ones_follow_in_time():
    a = _feed("AAA", T0, 600)
    b = _feed("BBB", T0 + 3600, 600)  # overlaps a
    c = _feed("CCC", T0 + 30 * 86400, 120)  # a month later
    segments = plan_segments([c, b, a])
    assert [s.symbols for s in segments] == [["AAA", "BBB"], ["CCC"]]
    first = segments[0]
    assert first.anchor_s == T0 + 3600 and first.start_s == T0 + 3600  # when both have data
    assert first.liquidate_s == T0 + 600 * 60 - 1  # inside AAA's last bar (the earlier end)
    assert first.steps[0] == T0 + 3600 and first.steps[-1] == T0 + 599 * 60
    assert first.bars == {"AAA": 540, "BBB": 540}


def test_from_to_cut_the_segments_and_an_empty_window_is_an_error():
    a = _feed("AAA", T0, 600, gap_at=100)
    segment = plan_segments([a], utc(2023, 4, 17, 1, 0), utc(2023, 4, 17, 5, 0))[0]
    assert segment.start_s == T0 + 3600 and segment.liquidate_s == T0 + 5 * 3600 - 1
    assert segment.bars == {"AAA": 40 + 140}  # minutes 61..100 and 161..300 (101..160 are a gap)
    with pytest.raises(BacktestDataError, match="no data to replay between --from and --to"):
        plan_segments([a], utc(2023, 5, 1), None)


def test_recordings_starting_more_than_a_week_apart_cannot_share_a_terminal():
    a = _feed("AAA", T0, 20 * 1440)
    b = _feed("BBB", T0 + 8 * 86400, 600)
    with pytest.raises(BacktestDataError, match="must start within 7 days"):
        plan_segments([a, b])


def test_a_recording_is_replayed_whole_not_cut_to_whole_weeks():
    """2023-04-16 22:00 to 2023-05-01: 2.1 weeks. The live demo loops 2 weeks of it (the nearest
    whole number) and drops the last day; a backtest replays every bar once."""
    from execution.simterminal.market import load_series
    from execution.simterminal.symbols import SymbolSpec
    from feeds.readers import read_bars

    [feed], _ = resolve_feeds([str(real_file(XAU_M1))])
    assert feed.spec["feed"]["replay"] == "once"
    assert feed.replay_end_s == feed.end_s and feed.bars_not_replayed == 0 and not feed.notes
    recorded = len(read_bars(feed.path, feed.utc_offset_hours, format=feed.format))
    backtest_spec = SymbolSpec.model_validate(feed.spec)
    demo_spec = SymbolSpec.model_validate({**feed.spec, "feed": {**feed.spec["feed"], "replay": "loop"}})
    assert load_series(backtest_spec, DATA, 0).bars == recorded
    assert load_series(demo_spec, DATA, 0).bars < recorded
