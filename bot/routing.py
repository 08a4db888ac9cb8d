"""Who gets the lead: a pure decision, explained.

Order: the lead's explicit owner, else the first routing rule that applies: an
account match (`match_account`: the owner of the company's or email domain's
open or accepted handoff), or a pool of reps rotated by weight, each at most
`daily_cap` leads a day; else nobody. Reps marked away are skipped. When every
rep of the matching pool is at the cap, the lead is held for the pool's manager
(`Route.held`). Positions, the day's loads and the account owners are passed in
and the new position handed back, so the caller keeps them in the store (under a
lock) and rotation stays fair across restarts and processes.

`why` is read by the rep on the card ("Why you: country is NZ — next in the
rotation of 2 reps"), by the CRM in the intake answer and in `handoff lead`, so
it says what happened in words, never a rule's position in the YAML.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.definition import Definition, RoutingRule
from bot.explain import describe_condition
from bot.leads import LeadIn
from store import routing as routing_store

# Addresses anyone can get: a shared domain says nothing about the account.
FREE_MAIL = frozenset(
    [
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.com.au",
        "ymail.com",
        "hotmail.com",
        "hotmail.co.uk",
        "outlook.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "zoho.com",
        "yandex.com",
        "yandex.ru",
        "mail.ru",
        "qq.com",
        "163.com",
        "126.com",
        "fastmail.com",
        "hey.com",
        "bigpond.com",
        "optusnet.com.au",
        "xtra.co.nz",
    ]
)


def company_key(company: str | None) -> str | None:
    """How account matching compares companies: trimmed, case-folded."""
    key = " ".join((company or "").split()).casefold()
    return key or None


def email_domain(email: str | None) -> str | None:
    """The email's domain, when it names an organisation (not free mail)."""
    if not email or "@" not in email:
        return None
    domain = email.rsplit("@", 1)[1].strip().casefold()
    return None if not domain or domain in FREE_MAIL else domain


def day_start(definition: Definition, now: datetime) -> datetime:
    """Midnight today in the definition's time zone: where a daily cap starts counting."""
    tz: ZoneInfo = definition.timezone
    local = now.astimezone(tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class Accounts:
    """Who works which account: read from the open and accepted handoffs, and added
    to as a batch hands off (a second lead of a new company follows the first)."""

    by_company: dict[str, str] = field(default_factory=dict)
    by_domain: dict[str, str] = field(default_factory=dict)

    def owner_of(self, lead: LeadIn) -> tuple[str, str] | None:
        """(owner, what matched) for this lead's company or email domain."""
        company = company_key(lead.company)
        if company and company in self.by_company:
            return self.by_company[company], f"{lead.company.strip()}"  # type: ignore[union-attr]
        domain = email_domain(lead.email)
        if domain and domain in self.by_domain:
            return self.by_domain[domain], f"@{domain}"
        return None

    def add(self, lead: LeadIn, owner: str) -> None:
        if company := company_key(lead.company):
            self.by_company[company] = owner
        if domain := email_domain(lead.email):
            self.by_domain[domain] = owner


def account_index(session: Any, leads: Collection[LeadIn]) -> Accounts:
    """Who works the accounts of these leads, read from the store (under the routing
    lock, so that what a concurrent batch just handed off is included)."""
    companies = {key for lead in leads if (key := company_key(lead.company))}
    domains = {domain for lead in leads if (domain := email_domain(lead.email))}
    by_company, by_domain = routing_store.account_owners(
        session, companies=companies, domains=domains
    )
    return Accounts(by_company, by_domain)


@dataclass(frozen=True)
class Route:
    owner: str | None
    why: str
    rotation_key: str | None = None
    next_position: int | None = None
    rule_key: str | None = None  # the pool the owner came from (counts toward its cap)
    held: RoutingRule | None = None  # every rep of this pool is at its daily cap


@dataclass(frozen=True)
class Pick:
    """One turn of a pool's rotation: the rep, the next position, who was at the cap."""

    rep: str | None
    next_position: int
    capped: tuple[str, ...]


def _matches(rule: RoutingRule, lead: LeadIn) -> bool:
    if rule.when is None:
        return True
    value = lead.field(rule.when.field)
    if value is None or value == "":
        return rule.when.allow_missing
    return rule.when.test(value)


def pick(
    rule: RoutingRule,
    *,
    position: int,
    unavailable: Collection[str],
    loads: Mapping[str, int],
) -> Pick:
    """The next rep of the pool's weighted rotation who is available and under the cap."""
    slots = rule.slots
    count = len(slots)
    capped: dict[str, None] = {}
    for step in range(count):
        index = (position + step) % count
        rep = slots[index]
        if rep in unavailable:
            continue
        if rule.daily_cap is not None and loads.get(rep, 0) >= rule.daily_cap:
            capped[rep] = None
            continue
        return Pick(rep, (index + 1) % count, tuple(capped))
    return Pick(None, position % count if count else 0, tuple(capped))


def route(
    lead: LeadIn,
    definition: Definition,
    *,
    rotation: Mapping[str, int],
    away: Collection[str] = (),
    exclude: Collection[str] = (),
    loads: Mapping[str, Mapping[str, int]] | None = None,
    accounts: Accounts | None = None,
) -> Route:
    """Pick the owner.

    Args:
        rotation: current round-robin position per rule key.
        away: reps marked away (skipped, said so in `why`).
        exclude: reps that cannot take it for another reason (unknown to Slack).
        loads: today's handoffs per rule key and rep (for rules with a daily cap).
        accounts: who works which account (for `match_account` rules).
    """
    unavailable = set(away) | set(exclude)
    skipped = []
    if lead.owner:
        if lead.owner not in unavailable:
            return Route(lead.owner, "named as the lead's owner")
        skipped.append(f"owner {lead.owner} is {'away' if lead.owner in away else 'not in Slack'}")

    for position, rule in enumerate(definition.handoff.routing):
        if not _matches(rule, lead):
            continue
        if rule.match_account:
            found = accounts.owner_of(lead) if accounts is not None else None
            if found is None:
                continue
            owner, matched = found
            if owner in unavailable:
                state = "away" if owner in away else "not available"
                skipped.append(f"{matched}'s owner {owner} is {state}")
                continue
            return Route(owner, _joined(skipped, f"works this account ({matched}) already"))
        turn = pick(
            rule,
            position=rotation.get(rule.key, 0),
            unavailable=unavailable,
            loads=(loads or {}).get(rule.key, {}),
        )
        if turn.capped:
            skipped.append(_at_cap(turn.capped, rule))
        if turn.rep is not None:
            return Route(
                turn.rep,
                _joined(skipped, _why(rule, position)),
                rule.key,
                turn.next_position,
                rule_key=rule.key,
            )
        if turn.capped:  # full for today: the pool's manager decides
            return Route(None, _joined(skipped, "held for a manager to assign"), held=rule)
        skipped.append(
            f"no rep available for {describe_condition(rule.when)}"
            if rule.when is not None
            else "no rep available in the general rotation"
        )

    return Route(None, "; ".join(skipped) or "no routing rule matched")


def _joined(skipped: list[str], why: str) -> str:
    return "; ".join([*skipped, why])


def _at_cap(reps: tuple[str, ...], rule: RoutingRule) -> str:
    names = ", ".join(reps)
    verb = "has" if len(reps) == 1 else "have"
    return f"{names} {verb} reached today's cap of {rule.daily_cap}"


def _why(rule: RoutingRule, position: int) -> str:
    """Why this rule's rep got the lead, in the words a rep reads on the card."""
    several = len(rule.reps) > 1
    if rule.when is None:
        if several:
            return f"next in the general rotation of {len(rule.reps)} reps"
        return "the rep for every lead" if position == 0 else "the rep for all other leads"
    if several:
        return f"{describe_condition(rule.when)} — next in the rotation of {len(rule.reps)} reps"
    return f"{describe_condition(rule.when)} — the rep for leads like this"


def pool_managers(definition: Definition, rule: RoutingRule) -> list[str]:
    """Who decides for a pool: its reps' managers, else the definition's sales owner."""
    managers = dict.fromkeys(
        manager for rep in rule.reps if (manager := definition.manager_of(rep))
    )
    return list(managers) or [definition.owners.sales]


def team_of_rep(definition: Definition, rep: str) -> list[str]:
    """The rep's team: every rep with the same manager, in the definition's order."""
    manager = definition.manager_of(rep)
    if manager is None:
        return [rep]
    return [r for r, m in definition.handoff.managers.items() if m == manager]
