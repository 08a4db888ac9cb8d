"""Work a listener leaves for after Slack has its answer.

The Bolt app runs with process_before_response: a listener runs on the thread
serving the request, and the response (the ack) leaves when the listener
returns. So a listener acks, hands anything slow (a decision's transaction, a
Web API call) to `after_ack`, and returns; the work runs on Bolt's listener
executor, which the server drains on shutdown.

Bolt's own `lazy=` listeners would do the same, but they re-parse the request
and deep-copy the context for each one, which the services on it cannot survive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltContext

logger = logging.getLogger(__name__)


def after_ack(context: BoltContext, work: Callable[..., Any], *args: Any) -> None:
    """Run `work(*args)` once the listener has returned; failures are logged."""
    context.listener_runner.listener_executor.submit(_logged, work, args)


def _logged(work: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        work(*args)
    except Exception:
        logger.exception("%s failed after the ack", getattr(work, "__name__", work))
