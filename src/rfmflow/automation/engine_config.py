"""Whether and how often the automation loop runs in a process, read from ``RFMFLOW_*``.

=================================  ==========  ===================================================
variable                           default     what
=================================  ==========  ===================================================
``RFMFLOW_AUTOMATION``             ``on``      ``off``: ``rfmflow serve`` and ``rfmflow worker``
                                               do not run the automation loop (the same as
                                               ``--no-automation``), e.g. when separate workers do
``RFMFLOW_AUTOMATION_INTERVAL``    ``5``       seconds between two passes of the loop
``RFMFLOW_AUTOMATION_BATCH``       ``500``     journeys decided per transaction
=================================  ==========  ===================================================

Like the service's settings, the process environment wins over the ``.env`` file (the one
given with ``--env-file``, else ``./.env``). The channels' settings are
:func:`~rfmflow.automation.settings.load_automation_settings`'s.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rfmflow.automation.runner import BATCH
from rfmflow.automation.settings import (
    PREFIX,
    AutomationSettings,
    AutomationSettingsError,
    load_automation_settings,
)
from rfmflow.service.settings import Settings, read_env_file

ON = ("on", "true", "1", "yes")
OFF = ("off", "false", "0", "no")


@dataclass(frozen=True)
class EngineConfig:
    """How the loop runs: on or off, the pause between passes, the runner's batch size."""

    enabled: bool = True
    interval: float = 5.0
    batch: int = BATCH


def merged_environ(env_file: Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``RFMFLOW_*`` values of ``env_file`` (default ``./.env``) under the process environment's."""
    file_values = read_env_file(env_file if env_file is not None else Path.cwd() / ".env")
    merged = {k: v for k, v in file_values.items() if k.startswith(PREFIX)}
    env = os.environ if environ is None else environ
    merged.update({k: v for k, v in env.items() if k.startswith(PREFIX)})
    return merged


def load_engine_config(environ: Mapping[str, str]) -> EngineConfig:
    """The loop's settings from ``environ``; a bad value names its variable."""

    def get(name: str) -> str:
        return environ.get(PREFIX + name, "").strip()

    switch = get("AUTOMATION").lower() or "on"
    if switch not in ON + OFF:
        raise AutomationSettingsError(f"{PREFIX}AUTOMATION: expected on or off; got {get('AUTOMATION')!r}")
    interval_text = get("AUTOMATION_INTERVAL") or "5"
    try:
        interval = float(interval_text)
    except ValueError:
        interval = math.nan
    if not (0.05 <= interval <= 3600):
        raise AutomationSettingsError(
            f"{PREFIX}AUTOMATION_INTERVAL: expected seconds between 0.05 and 3600; got {interval_text!r}"
        )
    batch_text = get("AUTOMATION_BATCH") or str(BATCH)
    if not batch_text.isdigit() or not 1 <= int(batch_text) <= 10_000:
        raise AutomationSettingsError(
            f"{PREFIX}AUTOMATION_BATCH: expected a whole number from 1 to 10000; got {batch_text!r}"
        )
    return EngineConfig(enabled=switch in ON, interval=interval, batch=int(batch_text))


def load_engine(
    service: Settings, env_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[EngineConfig, AutomationSettings]:
    """The loop's settings and the channels' settings, both from ``env_file`` and the environment."""
    env = merged_environ(env_file, environ)
    return load_engine_config(env), load_automation_settings(env, service)


__all__ = ["EngineConfig", "load_engine", "load_engine_config", "merged_environ"]
