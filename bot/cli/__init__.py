"""`handoff`: the command line. Each command group lives in its own module."""

from bot.cli import (  # noqa: F401 - each module registers its commands
    backtest_cmd,
    calibrate_cmd,
    definition_cmd,
    demo_cmd,
    hubspot_cmd,
    import_cmd,
    lead_cmd,
    report_cmd,
    run_cmd,
    salesforce_cmd,
)
from bot.cli.base import main

__all__ = ["main"]
