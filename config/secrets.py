"""Secrets come from the environment or a ``.env`` file, never from the JSON config.

``Secrets.values()`` feeds the log redaction filter, so whatever is loaded here can never be
printed by a log line, and ``__repr__`` hides the values so an exception cannot leak them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from dotenv import dotenv_values

WEBHOOK_CATEGORIES = ("crypto", "gold", "forex", "alerts")


@dataclass(frozen=True, repr=False)
class Secrets:
    mt5_path: str | None = None
    mt5_login: int | None = None
    mt5_password: str | None = None
    mt5_server: str | None = None
    discord_default: str | None = None
    discord_by_category: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        shown = {
            "mt5_path": self.mt5_path,
            "mt5_login": "set" if self.mt5_login else None,
            "mt5_password": "set" if self.mt5_password else None,
            "mt5_server": self.mt5_server,
            "discord_default": "set" if self.discord_default else None,
            "discord_by_category": sorted(self.discord_by_category),
        }
        return f"Secrets({shown})"

    def webhook_for(self, category: str) -> str | None:
        """The webhook for a category, falling back to the default webhook."""
        return self.discord_by_category.get(category) or self.discord_default

    def values(self) -> list[str]:
        """Every secret string, for redaction (the login number is not a secret on its own)."""
        candidates = [self.mt5_password, self.discord_default, *self.discord_by_category.values()]
        return [value for value in candidates if value and len(value) >= 4]


def _env_sources(env_files: list[Path]) -> dict[str, str]:
    """Merge .env files (earlier wins) under the real environment (always wins)."""
    merged: dict[str, str] = {}
    for path in reversed(env_files):
        if path.is_file():
            merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged


def load_secrets(env_files: list[Path] | None = None, environ: Mapping[str, str] | None = None) -> Secrets:
    """Read secrets; ``environ`` replaces the process environment and files (for tests)."""
    source = dict(environ) if environ is not None else _env_sources(env_files or [])

    def get(key: str) -> str | None:
        value = source.get(key, "").strip()
        return value or None

    login_text = get("MT5_LOGIN")
    login: int | None = None
    if login_text is not None:
        if not login_text.isdigit():
            raise ValueError("MT5_LOGIN must be the account number (digits only)")
        login = int(login_text)
    by_category = {}
    for category in WEBHOOK_CATEGORIES:
        url = get(f"DISCORD_WEBHOOK_URL_{category.upper()}")
        if url:
            by_category[category] = url
    return Secrets(
        mt5_path=get("MT5_PATH"),
        mt5_login=login,
        mt5_password=get("MT5_PASSWORD"),
        mt5_server=get("MT5_SERVER"),
        discord_default=get("DISCORD_WEBHOOK_URL"),
        discord_by_category=by_category,
    )
