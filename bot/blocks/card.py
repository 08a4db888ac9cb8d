"""The handoff card: what a rep sees for one lead, open or decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.blocks.common import (
    Block,
    Mrkdwn,
    actions,
    button,
    code,
    context,
    divider,
    header,
    limit_blocks,
    local_time,
    md,
    mention,
    message_text,
    mrkdwn,
    option,
    section,
)

ACCEPT = "handoff_accept"
REJECT = "handoff_reject"
REASSIGN = "handoff_reassign"
OPEN_CARD = "handoff_open_card"
OPEN_CRM = "handoff_open_crm"  # a link button: Slack opens the URL, the app only acks
CRM_BLOCK = "crm"
SNOOZE = "handoff_snooze"
COMMERCIAL = "handoff_commercial"
COMMERCIAL_BLOCK = "commercial"
DECIDE_BLOCK = "decide"


@dataclass(frozen=True)
class CardLine:
    label: str
    detail: str = ""


@dataclass(frozen=True)
class CrmLink:
    """The lead's record in its CRM (bot/crm/links.py), e.g. ("HubSpot", "https://...")."""

    crm: str
    url: str


def _crm_button(card: CardModel) -> Block | None:
    """A URL button: the link is a JSON field, never mrkdwn, so nothing in it is markup."""
    if card.crm_link is None:
        return None
    link = card.crm_link
    return button(f"Open in {link.crm}", OPEN_CRM, str(card.handoff_id), url=link.url)


@dataclass(frozen=True)
class CardModel:
    handoff_id: int
    lead_external_id: str
    company: str | None
    name: str | None
    title: str | None
    email: str | None
    source: str | None
    campaign: str | None
    score: int
    mql: int
    hot: bool
    fit: tuple[CardLine, ...]
    intent: tuple[CardLine, ...]
    commercial: tuple[tuple[str, str], ...]  # (id, label) from the definition
    due_at: datetime
    owner_tz: str | None
    owner_user_id: str | None
    routed_by: str
    status: str = "open"
    checked: tuple[str, ...] = ()
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason_label: str | None = None
    note: str | None = None
    action: str | None = None
    reassigned_to: str | None = None
    crm_link: CrmLink | None = None
    clock: str | None = None  # time left when rendered ("2h left"): Slack cannot tick
    snooze_offered: bool = False  # handoff.sla.snooze_max is set
    snoozed_until: datetime | None = None  # in a snooze now: until when, and why
    snooze_why: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _title(card: CardModel) -> str:
    """Plain text (the header): Slack renders no markup there."""
    company = card.company or card.email or card.lead_external_id
    return f"{'🔥 Hot lead' if card.hot else 'New lead'}: {company}"


def fallback_text(card: CardModel) -> Mrkdwn:
    """The notification text (and what screen readers get)."""
    who = ", ".join(filter(None, [card.name, card.title]))
    text = f"{_title(card)}" + (f" — {who}" if who else "")
    if card.status == "open":
        text += f". Respond by {local_time(card.due_at, card.owner_tz)}."
    return message_text(text, 3000)


def _person(card: CardModel) -> Mrkdwn:
    first = Mrkdwn(" · ").join(
        filter(
            None,
            [md("*{}*", card.name) if card.name else None, card.title, card.email],
        )
    )
    second = Mrkdwn(" · ").join(
        filter(
            None,
            [
                md("Source: {}", card.source) if card.source else None,
                md("Campaign: {}", card.campaign) if card.campaign else None,
            ],
        )
    )
    return Mrkdwn("\n").join(filter(None, [first, second])) or md("Lead {}", card.lead_external_id)


def _lines(lines: tuple[CardLine, ...], mark: str) -> Mrkdwn:
    return Mrkdwn("\n").join(
        md("{} {}", mark, line.label) + (md(" ({})", line.detail) if line.detail else "")
        for line in lines
    )


def _outcome(card: CardModel) -> Mrkdwn:
    when = local_time(card.decided_at, card.owner_tz) if card.decided_at else ""
    who = mention(card.decided_by)
    if card.status == "accepted":
        return md("✅ *Accepted* by {}, {}", who, when)
    if card.status == "rejected":
        action = "recycled to nurture" if card.action == "recycle" else "disqualified"
        text = md("❌ *Rejected* by {}, {}: {} ({})", who, when, card.reason_label or "", action)
        if card.note:
            text += md("\n> {}", card.note)
        return text
    if card.status == "reassigned":
        return md("↪️ *Reassigned* to {} by {}, {}", mention(card.reassigned_to), who, when)
    return Mrkdwn("")


def snoozed_line(until: datetime, why: str | None, tz: str | None) -> Mrkdwn:
    """'💤 Snoozed until Mon 23 Nov, 13:00 AEDT — waiting for the CFO' (card and App Home)."""
    return md("💤 Snoozed until *{}*", local_time(until, tz)) + (md(" — {}", why) if why else "")


def build_card(card: CardModel) -> list[Block]:
    blocks: list[Block] = [header(_title(card)), section(_person(card))]
    if card.fit:
        blocks.append(section(md("*Fit* — every criterion met\n{}", _lines(card.fit, "✓"))))
    if card.intent:
        blocks.append(
            section(
                md(
                    "*Intent* — {} points (qualifies at {})\n{}",
                    card.score,
                    card.mql,
                    _lines(card.intent, "•"),
                )
            )
        )
    if card.status != "open":
        blocks += [divider(), section(_outcome(card))]
        if card.checked:
            labels = [label for cid, label in card.commercial if cid in card.checked]
            blocks.append(context(md("Confirmed: {}", ", ".join(labels))))
        crm = _crm_button(card)
        if crm is not None:
            blocks.append(actions(crm, block_id=CRM_BLOCK))
        return limit_blocks(blocks)

    if card.commercial:
        options = [option(label, item_id) for item_id, label in card.commercial[:10]]
        checkboxes: Block = {"type": "checkboxes", "action_id": COMMERCIAL, "options": options}
        initial = [o for o in options if o["value"] in card.checked]
        if initial:
            checkboxes["initial_options"] = initial
        blocks.append(
            {
                "type": "section",
                "block_id": COMMERCIAL_BLOCK,
                "text": mrkdwn(Mrkdwn("*Confirm what you can* (saved with your decision)")),
                "accessory": checkboxes,
            }
        )
    value = str(card.handoff_id)
    buttons = [
        button("Accept", ACCEPT, value, style="primary"),
        button("Reject", REJECT, value, style="danger"),
        button("Reassign", REASSIGN, value),
    ]
    if card.snooze_offered and card.snoozed_until is None:
        buttons.append(button("Snooze", SNOOZE, value))
    buttons.extend(filter(None, [_crm_button(card)]))
    blocks.append(actions(*buttons, block_id=DECIDE_BLOCK))
    if card.snoozed_until is not None:
        blocks.append(context(snoozed_line(card.snoozed_until, card.snooze_why, card.owner_tz)))
    blocks.append(
        context(
            md("⏱ Respond by *{}*", local_time(card.due_at, card.owner_tz))
            + (md(" — {}", card.clock) if card.clock else ""),
            md("Why you: {}", card.routed_by),
            md("Lead {}", code(card.lead_external_id)),
        )
    )
    return limit_blocks(blocks)
