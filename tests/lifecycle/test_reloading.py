"""The one list of live settings: every name in it is a real Config field set by a variable, and a
merge keeps each restart field's running value while it takes the live ones."""
from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

from agentd.config import VARIABLES, Config
from agentd.lifecycle.reloading import DERIVED_FIELDS, LIVE_FIELDS, merge, restart_fields, variables_of


def test_every_live_field_is_a_config_field_that_a_variable_sets() -> None:
    fields = {f.name for f in dataclasses.fields(Config)}
    set_by_variable = {attr for attr, _ in VARIABLES.values()}
    assert LIVE_FIELDS <= fields and LIVE_FIELDS <= set_by_variable and DERIVED_FIELDS <= fields
    assert set(restart_fields()) | LIVE_FIELDS | DERIVED_FIELDS == fields
    assert not set(restart_fields()) & LIVE_FIELDS


def test_a_merge_takes_live_values_keeps_restart_ones_and_masks_old_and_new_secrets(tmp_path: Path) -> None:
    running = Config(home=tmp_path, health_port=8001, concurrency=4, max_cost_per_run=Decimal("0.50"),
                     llm_api_key="sk-old-0123456789", secrets=("sk-old-0123456789",))
    fresh = running.replace(health_port=8002, concurrency=9, max_cost_per_run=Decimal("0.10"),
                            llm_api_key="sk-new-9876543210", secrets=("sk-new-9876543210",))
    merged, applied, changed = merge(running, fresh)
    assert (merged.health_port, merged.concurrency) == (8001, 4)
    assert (merged.max_cost_per_run, merged.llm_api_key) == (Decimal("0.10"), "sk-new-9876543210")
    assert applied == ["llm_api_key", "max_cost_per_run"] and sorted(changed) == ["concurrency", "health_port"]
    assert set(merged.secrets) == {"sk-old-0123456789", "sk-new-9876543210"}
    assert variables_of(changed) == ["HEALTH_PORT", "AGENTD_CONCURRENCY"]
