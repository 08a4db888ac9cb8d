"""The review each owner of the definition gets: when a review falls due, or on demand."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot.blocks.common import (
    FALLBACK_TEXT,
    Block,
    Mrkdwn,
    as_mrkdwn,
    clip,
    code,
    context,
    header,
    md,
    section,
)

if TYPE_CHECKING:
    from bot.review import CriterionRejections, Review

# describe() names criteria, signals and reasons by id in backticks; ids are ours
# (lower-case letters, digits, _), every other part of a line may carry lead data.
_ID = re.compile(r"`([a-z][a-z0-9_]*)`")


def _since(review: Review) -> str:
    if review.recorded:
        return f"last reviewed on {review.since.isoformat()}"
    return f"never reviewed in Handoff; its first lead arrived on {review.since.isoformat()}"


def _rate(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.0%}"


def _figures(review: Review) -> str:
    before = (
        f" ({_rate(review.previous_accept_rate)} the period before)"
        if review.previous_accept_rate is not None
        else ""
    )
    return (
        f"Handed off {review.handed_off} · accepted {review.accepted} · "
        f"rejected {review.rejected} · accept rate {_rate(review.accept_rate)}{before}"
    )


def change_line(line: str) -> Mrkdwn:
    """A describe() line for Slack: ids in code spans, everything else escaped as data."""
    parts: list[Mrkdwn] = []
    end = 0
    for match in _ID.finditer(line):
        parts += [as_mrkdwn(line[end : match.start()]), code(match.group(1))]
        end = match.end()
    parts.append(as_mrkdwn(line[end:]))
    return Mrkdwn("").join(parts)


def _example(name: str | None, company: str | None) -> Mrkdwn:
    if name and company:
        return md("{} ({})", name, company)
    return as_mrkdwn(name or company or "—")


def _rejection(group: CriterionRejections) -> Mrkdwn:
    what = md("→ {}", group.criterion) if group.criterion else Mrkdwn("→ no criterion")
    reasons = Mrkdwn(", ").join(md("{} {}", label, count) for label, count in group.reasons)
    line = md("• {}: {} ({})", what, group.count, reasons)
    if group.examples:
        line += md(" — e.g. {}", Mrkdwn(", ").join(_example(*e) for e in group.examples))
    return line


def _suggestions(review: Review) -> Mrkdwn:
    heading = md(
        "*What calibration suggests* (from the rejections since; each needs at least {} "
        "rejections behind it)",
        review.minimum,
    )
    if not review.suggestions:
        return heading + Mrkdwn("\nNothing yet: no criterion or threshold has enough evidence.")
    lines = [
        md("{}. {}: {}", number, change_line(change), trade)
        for number, (change, trade) in enumerate(review.suggestions, 1)
    ]
    return heading + Mrkdwn("\n") + Mrkdwn("\n").join(lines)


def review_text(review: Review) -> str:
    """The notification text: the news and the headline figures."""
    if review.on_demand:
        return clip(
            f"Evidence for a review of the lead definition (version {review.version}), "
            f"{_since(review)}. Since then: {_figures(review)}.",
            FALLBACK_TEXT,
        )
    return clip(
        f"The lead definition (version {review.version}) is due for review: {_since(review)}, "
        f"to be reviewed every {review.every_days} days. Since then: {_figures(review)}.",
        FALLBACK_TEXT,
    )


def review_blocks(review: Review) -> list[Block]:
    if review.on_demand:
        blocks = [
            header("The evidence for a review of the lead definition"),
            section(
                md(
                    "Version *{}* of the definition you both signed was {}.\n*Since then:* {}",
                    review.version,
                    _since(review),
                    _figures(review),
                )
            ),
        ]
    else:
        blocks = [
            header("The lead definition is due for review"),
            section(
                md(
                    "Version *{}* of the definition you both signed was {}; you agreed to "
                    "review it every {} days (due {}).\n*Since then:* {}",
                    review.version,
                    _since(review),
                    review.every_days,
                    review.due.isoformat(),
                    _figures(review),
                )
            ),
        ]
    if review.by_criterion:
        blocks.append(
            section(
                Mrkdwn("*Rejections by the criterion they point at*\n")
                + Mrkdwn("\n").join(_rejection(group) for group in review.by_criterion)
            )
        )
    if review.suggestions is not None:
        blocks.append(section(_suggestions(review)))
    blocks.append(
        context(
            "Change it together: `handoff calibrate --propose N` sends one of these as a "
            "proposal, or edit `qualification.yml` (set `reviewed_on` to the day you reviewed "
            "it) and `handoff definition propose` it: you both approve it here."
        )
    )
    return blocks
