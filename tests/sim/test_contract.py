"""Contract test: the simulated terminal against the REAL MetaTrader5 package.

The Windows wheel is downloaded with pip (it installs nowhere: only its files are read). Its
``__init__.py`` gives the constants; its ``_core.pyd`` string table gives the structures' field
names in declaration order, the function names and the ``last_error`` texts. The test skips
only when the wheel cannot be downloaded (no network), and says so.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

import execution.simterminal as sim_package
from execution.simterminal import SimTerminal
from execution.simterminal.constants import MT5_CONSTANTS
from execution.simterminal.types import RES_TEXT, STRUCTURES_IN_BINARY_ORDER

CONSTANT_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)\s*=\s*([-0-9xXa-fA-F|\s]+?)\s*(#.*)?$")
API_FUNCTIONS = (
    "initialize", "login", "shutdown", "version", "last_error", "terminal_info", "account_info",
    "symbols_total", "symbols_get", "symbol_info", "symbol_info_tick", "symbol_select",
    "copy_rates_from", "copy_rates_from_pos", "copy_rates_range", "copy_ticks_from",
    "copy_ticks_range", "positions_total", "positions_get", "orders_total", "orders_get",
    "history_orders_total", "history_orders_get", "history_deals_total", "history_deals_get",
    "order_check", "order_send", "order_calc_margin", "order_calc_profit")


@pytest.fixture(scope="module")
def wheel(request: pytest.FixtureRequest) -> zipfile.ZipFile:
    # downloaded once per machine (pytest's cache plugin is off in pytest.ini)
    folder = Path(tempfile.gettempdir()) / "scalper-tests-metatrader5-wheel"
    folder.mkdir(parents=True, exist_ok=True)
    wheels = sorted(folder.glob("metatrader5-*win_amd64.whl"))
    if not wheels:
        command = [sys.executable, "-m", "pip", "download", "MetaTrader5", "--no-deps",
                   "--only-binary=:all:", "--platform", "win_amd64", "-d", str(folder)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot download the MetaTrader5 wheel to compare against: {exc}")
        wheels = sorted(folder.glob("metatrader5-*win_amd64.whl"))
        if done.returncode != 0 or not wheels:
            pytest.skip("cannot download the MetaTrader5 wheel to compare against (pip: "
                        f"{(done.stderr or done.stdout).strip()[-300:]})")
    archive = zipfile.ZipFile(wheels[-1])
    request.addfinalizer(archive.close)
    return archive


@pytest.fixture(scope="module")
def real_constants(wheel: zipfile.ZipFile) -> dict[str, int]:
    source = wheel.read("MetaTrader5/__init__.py").decode("utf-8")
    constants: dict[str, int] = {}
    for line in source.splitlines():
        match = CONSTANT_LINE.match(line.strip())
        if match:
            constants[match.group(1)] = _evaluate(match.group(2))
    assert len(constants) > 150, "the real package's constant list could not be parsed"
    return constants


@pytest.fixture(scope="module")
def core_strings(wheel: zipfile.ZipFile) -> list[str]:
    name = next(n for n in wheel.namelist() if re.match(r"MetaTrader5/_core.*\.pyd$", n))
    return [s.decode("latin-1") for s in re.findall(rb"[\x20-\x7e]{2,}", wheel.read(name))]


def _evaluate(expression: str) -> int:
    value = 0
    for part in expression.split("|"):
        value |= int(part.strip(), 0)
    return value


def test_every_sim_constant_has_the_real_value(real_constants: dict[str, int]) -> None:
    sim_class = {n: getattr(SimTerminal, n) for n in dir(SimTerminal)
                 if n.isupper() and isinstance(getattr(SimTerminal, n), int)}
    sim_module = {n: getattr(sim_package, n) for n in dir(sim_package)
                  if n.isupper() and isinstance(getattr(sim_package, n), int)}
    for source, constants in (("SimTerminal", sim_class), ("execution.simterminal", sim_module)):
        unknown = sorted(set(constants) - set(real_constants))
        assert not unknown, f"{source} defines constants the real package lacks: {unknown}"
        wrong = {n: (v, real_constants[n]) for n, v in constants.items() if v != real_constants[n]}
        assert not wrong, f"{source} constants differ from the real package (sim, real): {wrong}"


def test_the_sim_has_every_real_constant(real_constants: dict[str, int]) -> None:
    missing = sorted(set(real_constants) - set(MT5_CONSTANTS))
    assert not missing, f"regenerate constants.py (gen_constants): missing {missing}"
    terminal_missing = [n for n in real_constants if getattr(SimTerminal, n, None) != real_constants[n]]
    assert not terminal_missing


def test_constants_the_adapter_relies_on(real_constants: dict[str, int]) -> None:
    """Spot checks of values hand-written mocks got wrong in public code."""
    assert real_constants["TRADE_ACTION_SLTP"] == SimTerminal.TRADE_ACTION_SLTP == 6
    assert real_constants["ORDER_FILLING_IOC"] == SimTerminal.ORDER_FILLING_IOC == 1
    assert real_constants["TIMEFRAME_H1"] == SimTerminal.TIMEFRAME_H1 == 16385
    assert real_constants["COPY_TICKS_ALL"] == SimTerminal.COPY_TICKS_ALL == -1
    assert "SYMBOL_FILLING_FOK" not in real_constants and not hasattr(SimTerminal, "SYMBOL_FILLING_FOK")


def test_structure_fields_match_the_binary_string_table(core_strings: list[str]) -> None:
    """The real _core.pyd declares each field name once, structure by structure, in order."""
    start = core_strings.index("ticket")
    end = core_strings.index("volume_dbl", start)
    real_sequence = core_strings[start:end + 1]
    ours: list[str] = []
    for structure in STRUCTURES_IN_BINARY_ORDER:
        for name in structure._fields:
            if name not in ours:
                ours.append(name)
    assert ours == real_sequence


def test_functions_exist_in_the_real_package_and_in_the_sim(core_strings: list[str]) -> None:
    strings = set(core_strings)
    for name in API_FUNCTIONS:
        assert name in strings, f"{name} is not a function of the real package"
        assert callable(getattr(SimTerminal, name, None)), f"the simulator lacks {name}"


def test_last_error_texts_are_the_real_ones(core_strings: list[str]) -> None:
    strings = set(core_strings)
    for code, text in RES_TEXT.items():
        expected = text.replace("%s", "%S")
        assert expected in strings, f"last_error text for {code} not in the real package: {text!r}"
    assert 'Invalid "comment" argument' in strings
    assert "Unnamed arguments not allowed" in strings


def test_constants_module_is_exactly_what_the_generator_makes(wheel: zipfile.ZipFile) -> None:
    """constants.py was generated from this wheel and not edited by hand since."""
    from execution.simterminal import gen_constants

    source = wheel.read("MetaTrader5/__init__.py").decode("utf-8")
    version = gen_constants.parse_version(source)

    def without_version(text: str) -> list[str]:  # a newer wheel alone is no drift
        return [line for line in text.splitlines() if version not in line and "PACKAGE_VERSION" not in line
                and "from MetaTrader5" not in line]

    generated = gen_constants.render(source)
    committed = gen_constants.TARGET.read_text(encoding="utf-8")
    assert without_version(generated) == without_version(committed)
