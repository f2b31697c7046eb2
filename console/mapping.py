"""Map stage: Expensify coding (policy, category, tags) → IFS company, account and code parts.

Pure functions over data: no I/O. Defaults come from Expensify itself (a category's GL code is
the account, a tag's GL code is the code part value); the operator's overrides, persisted by
the store as `MappingRule` rows, win over the defaults.

Override kinds (the `kind` of a rule):
- ``"category"``: source = category name, target = IFS account (code part A).
- ``"tag:<level name>"``: source = tag name at that level, target = code part value.
- ``"tag-level"``: source = tag level name, target = code part letter (B–J). Per policy, it
  places a level that the posting config's ``code_part_by_tag_level`` does not name (or moves
  one that it does).

Decisions, so that they are written down:
- A tag level whose code part letter is unknown (not in ``code_part_by_tag_level`` and no
  ``tag-level`` rule) is ignored: the company does not book that dimension. If the operator
  has nonetheless mapped a tag value of that level, the report is held as ``unmapped-tag``,
  because their mapping could not be honoured.
- Disabled categories and tags still map: the report was approved with them.
- Zero-amount lines are mapped but never posted, so their mapping problems do not hold the
  report (they stay visible on the line).
- An empty tag value at a level means "no tag at this level": no code part, no hold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from console import code_sources, line_coding
from console.expensify.models import ExportReport, ExportTransaction, PolicyInfo
from console.ifs.models import CODE_PARTS
from console.tax import LineTax, line_tax

if TYPE_CHECKING:
    from console.config import PostingConfig

CATEGORY = "category"
TAG_LEVEL = "tag-level"
TAG_PREFIX = "tag:"


def tag_kind(level: str) -> str:
    """The override kind for tag values of one level: ``tag:Cost Center``."""
    return TAG_PREFIX + level


# What the stages read from the `[posting]` config: the model itself, so every key they read
# is typed (a misspelt key is a type error, not a silent default).
PostingRules: TypeAlias = "PostingConfig"


@dataclass(frozen=True)
class Hold:
    """Why a report cannot be posted yet: a machine-readable code (design.md §4) and a sentence
    for people naming the report, the line and the value."""

    code: str
    message: str
    transaction_id: str = ""


@dataclass(frozen=True)
class MappingRule:
    """One operator override as the store persists it."""

    policy_id: str
    kind: str
    source: str
    target: str
    updated_by: str = ""
    updated_at: str = ""


ANY_POLICY = ""  # a rule stored with policy_id "" applies to every policy without its own


@dataclass(frozen=True)
class MappingOverrides:
    """The operator's overrides, keyed (policy_id, kind, source) → target.

    A rule for the policy itself wins over a rule for every policy (policy_id "").
    """

    targets: Mapping[tuple[str, str, str], str] = field(default_factory=dict)

    @classmethod
    def from_rules(cls, rules: Iterable[MappingRule]) -> MappingOverrides:
        return cls({(r.policy_id, r.kind, r.source): r.target for r in rules})

    @classmethod
    def from_store_rows(cls, rows: Iterable[Any]) -> MappingOverrides:
        """From the store's rows (kind, policy_id, source, rule={"target": value})."""
        targets: dict[tuple[str, str, str], str] = {}
        for row in rows:
            target = getattr(row, "target", None)
            if target is None:
                target = (getattr(row, "rule", None) or {}).get("target")
            if isinstance(target, str) and target:
                targets[(row.policy_id, row.kind, row.source)] = target
        return cls(targets)

    def get(self, policy_id: str, kind: str, source: str) -> str | None:
        found = self.targets.get((policy_id, kind, source))
        if found is None and policy_id != ANY_POLICY:
            found = self.targets.get((ANY_POLICY, kind, source))
        return found


NO_OVERRIDES = MappingOverrides()


@dataclass(frozen=True)
class MappedLine:
    transaction: ExportTransaction
    account: str | None
    code_parts: dict[str, str]
    amount_minor: int
    reimbursable: bool
    issues: tuple[Hold, ...] = ()
    # letter → (kind, source) the value came from, so later messages can say what to remap.
    code_part_sources: dict[str, tuple[str, str]] = field(default_factory=dict)
    tax: LineTax | None = None  # console/tax.py: the IFS tax code, net and tax of the line
    # IFS row fields beyond code parts, as (name, value): a billable line's project activity
    # (console/line_coding.py).
    row_fields: tuple[tuple[str, Any], ...] = ()

    @property
    def transaction_id(self) -> str:
        return self.transaction.transactionID


@dataclass(frozen=True)
class MappedReport:
    report: ExportReport
    company: str | None
    currency: str
    lines: list[MappedLine]
    problems: list[Hold]
    # letter → tag level name, for messages and cost-centre totals ("B" → "Cost Center").
    level_by_code_part: dict[str, str] = field(default_factory=dict)

    @property
    def report_id(self) -> str:
        return self.report.reportID


def split_tag(tag: str) -> list[str]:
    """One tag name per level. Expensify joins levels with ':' and escapes a literal colon in a
    tag name as '\\:'."""
    if not tag:
        return []
    if "\\" not in tag:
        return tag.split(":")
    parts: list[str] = []
    current: list[str] = []
    chars = iter(tag)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            current.append(nxt if nxt == ":" else ch + nxt)
        elif ch == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


@dataclass(frozen=True)
class _PolicyIndex:
    """Per-policy look-up tables, built once per policy per cycle."""

    category_gl: dict[str, str]
    tag_gl: list[dict[str, str]]  # per level, tag name → glCode
    levels: list[str]
    letter_by_level: dict[str, str]
    # (letter, kind, field) tried after the tags: report fields, then employee defaults.
    after_tags: list[tuple[str, str, str]] = field(default_factory=list)


def _index_policy(
    policy: PolicyInfo | None, posting: PostingRules, overrides: MappingOverrides, policy_id: str
) -> _PolicyIndex:
    category_gl: dict[str, str] = {}
    tag_gl: list[dict[str, str]] = []
    levels: list[str] = []
    if policy is not None:
        category_gl = {c.name: c.glCode for c in policy.categories}
        for level in policy.tag_levels:
            levels.append(level.name)
            tag_gl.append({t.name: t.glCode for t in level.tags})
    letter_by_level = dict(posting.code_part_by_tag_level)
    for wanted in (ANY_POLICY, policy_id):  # the policy's own rules last, so they win
        for (p, kind, source), target in overrides.targets.items():
            if p == wanted and kind == TAG_LEVEL:
                letter_by_level[source] = target
    after_tags = code_sources.sources_of(posting, policy_id)
    return _PolicyIndex(category_gl, tag_gl, levels, letter_by_level, after_tags)


def _line_label(report: ExportReport, tx: ExportTransaction) -> str:
    merchant = tx.display_merchant
    who = f" ({merchant})" if merchant else ""
    return f"report {report.reportID}, line {tx.transactionID}{who}"


def _map_line(
    report: ExportReport,
    tx: ExportTransaction,
    index: _PolicyIndex,
    overrides: MappingOverrides,
    policy_known: bool,
    posting: PostingRules,
) -> MappedLine:
    policy_id = report.policyID
    issues: list[Hold] = []
    label = _line_label(report, tx)

    category = tx.category
    account = overrides.get(policy_id, CATEGORY, category)
    if account is None:
        account = tx.categoryGlCode or index.category_gl.get(category) or None
    if not account:
        account = None
        what = f"category '{category}'" if category else "no category"
        issues.append(
            Hold(
                f"unmapped-category:{category}",
                f"The expense {label} has {what}, which has no GL account: set a GL code on "
                f"the category in Expensify or map it to an IFS account in the console.",
                tx.transactionID,
            )
        )

    code_parts: dict[str, str] = {}
    sources: dict[str, tuple[str, str]] = {}
    values = split_tag(tx.tag)
    levels = index.levels
    for position, tag_name in enumerate(values):
        if not tag_name:
            continue
        if position < len(levels):
            level = levels[position]
            gl_by_tag = index.tag_gl[position]
        else:
            # More tag values than the policy has levels: the tag cannot be placed.
            level = f"level {position + 1}"
            gl_by_tag = {}
        kind = tag_kind(level)
        letter = index.letter_by_level.get(level)
        override = overrides.get(policy_id, kind, tag_name)
        if letter is None:
            if override is not None:
                issues.append(
                    Hold(
                        f"unmapped-tag:{level}:{tag_name}",
                        f"The tag '{tag_name}' on {label} is mapped to {override}, but the tag "
                        f"level '{level}' has no IFS code part: add it to "
                        f"code_part_by_tag_level in the posting config.",
                        tx.transactionID,
                    )
                )
            continue  # the company does not book this level
        if letter not in CODE_PARTS:
            issues.append(
                Hold(
                    f"unmapped-tag:{level}:{tag_name}",
                    f"The tag level '{level}' is configured for code part '{letter}', which is "
                    f"not one of IFS's code parts B–J; fix code_part_by_tag_level.",
                    tx.transactionID,
                )
            )
            continue
        value = override
        if value is None:
            if tag_name not in gl_by_tag:
                where = (
                    f"is not a tag of policy {policy_id}"
                    if policy_known
                    else "cannot be looked up: the policy was not read"
                )
                issues.append(
                    Hold(
                        f"unmapped-tag:{level}:{tag_name}",
                        f"The tag '{tag_name}' ({level}) on {label} {where}; map it to an IFS "
                        f"code part {letter} value in the console.",
                        tx.transactionID,
                    )
                )
                continue
            value = gl_by_tag[tag_name] or None
        if not value:
            issues.append(
                Hold(
                    f"unmapped-tag:{level}:{tag_name}",
                    f"The tag '{tag_name}' ({level}) on {label} has no GL code: set one in "
                    f"Expensify or map it to an IFS code part {letter} value in the console.",
                    tx.transactionID,
                )
            )
            continue
        if letter in code_parts:
            issues.append(
                Hold(
                    f"unmapped-tag:{level}:{tag_name}",
                    f"Two tag levels of policy {policy_id} are configured for code part "
                    f"{letter}; fix code_part_by_tag_level so each level has its own.",
                    tx.transactionID,
                )
            )
            continue
        code_parts[letter] = value
        sources[letter] = (kind, tag_name)

    if index.after_tags:  # report fields, then employee defaults (console/code_sources.py)
        code_sources.fill(
            report,
            code_parts,
            sources,
            index.after_tags,
            lambda kind, value: overrides.get(policy_id, kind, value),
        )

    billing = line_coding.NO_BILLING
    if line_coding.billing_on(posting):
        # A billable line's project and activity (console/line_coding.py).
        tag_by_level = {
            levels[i]: (name, index.tag_gl[i]) for i, name in enumerate(values) if i < len(levels)
        }

        def tag_value(level: str) -> tuple[str, str | None]:
            name, gl_by_tag = tag_by_level.get(level, ("", {}))
            if not name:
                return "", None
            return name, overrides.get(policy_id, tag_kind(level), name) or gl_by_tag.get(name)

        billing = line_coding.bill(
            report,
            tx,
            code_parts,
            sources,
            posting,
            tag_value,
            lambda kind, value: overrides.get(policy_id, kind, value),
            label,
        )
        issues.extend(Hold(code, message, tx.transactionID) for code, message in billing.holds)

    tax, tax_hold = line_tax(report, tx, account, posting)
    if tax_hold is not None:
        issues.append(Hold(*tax_hold))
    return MappedLine(
        transaction=tx,
        account=account,
        code_parts=code_parts,
        amount_minor=tx.posted_amount,
        reimbursable=tx.reimbursable,
        issues=tuple(issues),
        code_part_sources=sources,
        tax=tax,
        row_fields=billing.fields,
    )


def merge_holds(holds: Iterable[Hold]) -> list[Hold]:
    """One hold per code, in first-seen order; a repeated code says how many lines share it."""
    first: dict[str, Hold] = {}
    count: Counter[str] = Counter()
    for h in holds:
        count[h.code] += 1
        first.setdefault(h.code, h)
    out = []
    for code, h in first.items():
        n = count[code]
        if n > 1:
            h = Hold(
                h.code,
                f"{h.message} ({n - 1} more line(s) have the same problem.)",
                h.transaction_id,
            )
        out.append(h)
    return out


def map_report(
    report: ExportReport,
    policies: Mapping[str, PolicyInfo],
    posting: PostingRules,
    overrides: MappingOverrides = NO_OVERRIDES,
    *,
    _indexes: dict[str, _PolicyIndex] | None = None,
) -> MappedReport:
    """Map every line of a report; problems are holds (the report will be held whole)."""
    policy_id = report.policyID
    policy = policies.get(policy_id)
    index = _indexes.get(policy_id) if _indexes is not None else None
    if index is None:
        index = _index_policy(policy, posting, overrides, policy_id)
        if _indexes is not None:
            _indexes[policy_id] = index
    problems: list[Hold] = []
    company = posting.company_by_policy.get(policy_id) or None
    if company is None:
        problems.append(
            Hold(
                f"unknown-policy:{policy_id}",
                f"Report {report.reportID} belongs to Expensify policy '{policy_id}'"
                f"{' (' + report.policyName + ')' if report.policyName else ''}, which has no "
                f"IFS company: add it to company_by_policy in the posting config.",
            )
        )
    lines = [
        _map_line(report, tx, index, overrides, policy is not None, posting)
        for tx in report.transactions
    ]
    problems.extend(merge_holds(h for line in lines if line.amount_minor != 0 for h in line.issues))
    level_by_letter = {letter: level for level, letter in index.letter_by_level.items()}
    return MappedReport(
        report=report,
        company=company,
        currency=report.currency,
        lines=lines,
        problems=problems,
        level_by_code_part=level_by_letter,
    )


def map_reports(
    reports: Iterable[ExportReport],
    policies: Mapping[str, PolicyInfo],
    posting: PostingRules,
    overrides: MappingOverrides = NO_OVERRIDES,
) -> list[MappedReport]:
    indexes: dict[str, _PolicyIndex] = {}  # built once per policy, not once per report
    return [map_report(r, policies, posting, overrides, _indexes=indexes) for r in reports]


# ---------------------------------------------------------------- the mapping editor's helpers


def mapping_usage(
    reports: Iterable[ExportReport], policies: Mapping[str, PolicyInfo] | None = None
) -> Counter[tuple[str, str, str]]:
    """How many reports use each (policy_id, kind, source): "affects N pending reports".

    A report counts once per key however many of its lines use it. Tag values are keyed by
    their level name from the policy (``tag:Cost Center``); without the policy, by position
    (``tag:level 1``).
    """
    policies = policies or {}
    level_names: dict[str, list[str]] = {}
    usage: Counter[tuple[str, str, str]] = Counter()
    for report in reports:
        pid = report.policyID
        if pid not in level_names:
            policy = policies.get(pid)
            level_names[pid] = [lv.name for lv in policy.tag_levels] if policy else []
        levels = level_names[pid]
        keys: set[tuple[str, str, str]] = set()
        for tx in report.transactions:
            keys.add((pid, CATEGORY, tx.category))
            for position, name in enumerate(split_tag(tx.tag)):
                if name:
                    level = levels[position] if position < len(levels) else f"level {position + 1}"
                    keys.add((pid, tag_kind(level), name))
        usage.update(keys)
    return usage


@dataclass(frozen=True)
class DefaultMapping:
    """One row of the mapping editor: what Expensify maps a source to by default."""

    kind: str
    source: str
    default_target: str  # "" where Expensify has no GL code (it needs an override)
    enabled: bool = True


def suggest_defaults(policy: PolicyInfo) -> list[DefaultMapping]:
    """Every category and tag of a policy with the target Expensify gives it by default."""
    rows = [DefaultMapping(CATEGORY, c.name, c.glCode, c.enabled) for c in policy.categories]
    for level in policy.tag_levels:
        kind = tag_kind(level.name)
        rows.extend(DefaultMapping(kind, t.name, t.glCode, t.enabled) for t in level.tags)
    return rows
