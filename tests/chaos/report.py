"""The chaos suite's summary: faults and crashes injected, and how many were survived.

A fault counts as survived when every invariant checked after it held (registry and broker
agree, nothing lost, nothing duplicated, the feed or notifier delivered what it must). Each
test prints its table to stdout (``pytest -s`` shows it) and writes it to its tmp folder as
``chaos_report.txt`` and ``chaos_report.json``, in a ``finally`` so a failing run has one too.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


@dataclass
class ChaosReport:
    title: str
    seed: int
    injected: Counter = field(default_factory=Counter)   # (component, kind) -> count
    survived: Counter = field(default_factory=Counter)   # (component, kind) -> count
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def record(self, component: str, kinds: Counter | Iterable[str], survived: bool) -> None:
        """Faults of one checked period: injected, and survived if the checks after them held."""
        counts = kinds if isinstance(kinds, Counter) else Counter(kinds)
        for kind, n in counts.items():
            self.injected[(component, kind)] += n
            if survived:
                self.survived[(component, kind)] += n

    def total(self, component: str | None = None) -> int:
        return sum(n for (c, _), n in self.injected.items() if component is None or c == component)

    def total_survived(self, component: str | None = None) -> int:
        return sum(n for (c, _), n in self.survived.items() if component is None or c == component)

    def render(self) -> str:
        width = max([len(f"{c} / {k}") for c, k in self.injected] + [24])
        lines = [f"== chaos: {self.title} (seed {self.seed}) ==",
                 f"{'component / fault':<{width}}  {'injected':>8}  {'survived':>8}"]
        for key in sorted(self.injected):
            component, kind = key
            lines.append(f"{component + ' / ' + kind:<{width}}  {self.injected[key]:>8}  {self.survived[key]:>8}")
        lines.append(f"{'TOTAL':<{width}}  {self.total():>8}  {self.total_survived():>8}")
        for name, value in self.figures.items():
            lines.append(f"{name}: {value}")
        lines += self.notes
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "seed": self.seed,
                "rows": [{"component": c, "kind": k, "injected": n, "survived": self.survived[(c, k)]}
                         for (c, k), n in sorted(self.injected.items())],
                "figures": self.figures, "notes": self.notes}

    def publish(self, folder: Path) -> str:
        """Print the table and write it (text and JSON) into ``folder``."""
        text = self.render()
        print("\n" + text)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "chaos_report.txt").write_text(text + "\n", encoding="utf-8")
        (folder / "chaos_report.json").write_text(json.dumps(self.to_json(), indent=1, default=str), encoding="utf-8")
        return text
