"""The ``notifications`` section of bot.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.notify_model import NotifyConfig

BOT_JSON = Path(__file__).resolve().parents[2] / "config" / "bot.json"


def test_the_shipped_section_is_valid_and_equals_the_defaults():
    section = json.loads(BOT_JSON.read_text(encoding="utf-8"))["notifications"]
    assert NotifyConfig.model_validate(section) == NotifyConfig()
    assert NotifyConfig().daily_summary_utc == "21:00"


@pytest.mark.parametrize("values, fragment", [
    ({"daily_summary_utc": "9pm"}, "HH:MM"),
    ({"daily_summary_utc": "24:00"}, "HH:MM"),
    ({"muted_events": ["trade_opend"]}, "unknown event kinds trade_opend"),
    ({"critical_mention": "everyone"}, "@here, @everyone"),
    ({"min_priority": "urgent"}, "min_priority"),
    ({"backoff_initial_seconds": 10, "backoff_max_seconds": 5}, "backoff_max_seconds must be at least"),
    ({"queue_size": 5}, "queue_size"),
    ({"webhook_url": "https://discord.com/api/webhooks/1/x"}, "webhook_url"),  # secrets never in JSON
])
def test_bad_values_are_refused_with_the_key(values, fragment):
    with pytest.raises(ValidationError) as error:
        NotifyConfig(**values)
    assert fragment in str(error.value)


def test_mentions_are_accepted():
    for mention in ("@here", "@everyone", "<@123456789012345678>", "<@&123456789012345678>", ""):
        assert NotifyConfig(critical_mention=mention).critical_mention == mention
