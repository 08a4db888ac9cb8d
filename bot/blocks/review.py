"""The review reminder each owner of the definition gets when a review falls due."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.blocks.common import FALLBACK_TEXT, Block, clip, context, escape, header, section

if TYPE_CHECKING:
    from bot.review import Review


def _since(review: Review) -> str:
    if review.recorded:
        return f"last reviewed on {review.since.isoformat()}"
    return f"never reviewed in Handoff; its first lead arrived on {review.since.isoformat()}"


def _rate(review: Review) -> str:
    return "—" if review.accept_rate is None else f"{review.accept_rate:.0%}"


def _figures(review: Review) -> str:
    return (
        f"Handed off {review.handed_off} · accepted {review.accepted} · "
        f"rejected {review.rejected} · accept rate {_rate(review)}"
    )


def _rejections(review: Review) -> list[str]:
    lines = []
    for group in review.by_criterion:
        what = f"→ {escape(group.criterion)}" if group.criterion else "→ no criterion"
        reasons = ", ".join(f"{escape(label)} {count}" for label, count in group.reasons)
        lines.append(f"• {what}: {group.count} ({reasons})")
    return lines


def review_text(review: Review) -> str:
    """The notification text: the news and the headline figures."""
    return clip(
        f"The lead definition (version {review.version}) is due for review: {_since(review)}, "
        f"to be reviewed every {review.every_days} days. Since then: {_figures(review)}.",
        FALLBACK_TEXT,
    )


def review_blocks(review: Review) -> list[Block]:
    blocks = [
        header("The lead definition is due for review"),
        section(
            f"Version *{review.version}* of the definition you both signed was "
            f"{_since(review)}; you agreed to review it every {review.every_days} days "
            f"(due {review.due.isoformat()}).\n*Since then:* {_figures(review)}"
        ),
    ]
    rejections = _rejections(review)
    if rejections:
        blocks.append(
            section("*Rejections by the criterion they point at*\n" + "\n".join(rejections))
        )
    blocks.append(
        context(
            "Change it together: edit `qualification.yml`, set `reviewed_on` to the day you "
            "reviewed it, and `handoff definition propose` it: you both approve it here."
        )
    )
    return blocks
