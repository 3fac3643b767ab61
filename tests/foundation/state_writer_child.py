"""Child process for the crash test: writes self-checking state documents in a loop.

Before each write it prints the sequence number it is about to write, so the parent knows
that after a kill the file must hold that number or the one before it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from state.store import StateStore  # noqa: E402

store = StateStore(Path(sys.argv[1]))
n = int(store.load("trades", {"n": 0})["n"])
print("ready", n, flush=True)
while True:
    n += 1
    print("begin", n, flush=True)
    trades = {str(1000 + i): {"ticket": 1000 + i, "n": n, "symbol": "XAUUSD", "volume": 0.01}
              for i in range(100)}
    store.save("trades", {"n": n, "trades": trades, "check": n * 100})
