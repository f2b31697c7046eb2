"""The close report: the tie-out as text, CSV, and a printable self-contained HTML page with
inline SVG charts (accrued spend by account and by cost centre, and what is still held).

Pure rendering of a `console.close.TieOut`; nothing here reads a service or the store.
Outside data (report IDs, employees, merchants, reasons) is shown, never executed: control
characters made visible in every form, CSV cells neutralised against spreadsheet formulas,
HTML escaped (console/textsafe.py).
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from decimal import Decimal

from console.close import (
    APPROVED,
    CARDS_READ,
    COLUMNS,
    EXCLUDED,
    HELD,
    IN_IFS,
    MOVED_IN,
    MOVED_OUT,
    ZERO,
    CardSpendSection,
    TieOut,
)
from console.money import fmt_decimal
from console.textsafe import csv_cell, visible, visible_text

COLUMN_TITLES = {
    APPROVED: "approved",
    MOVED_IN: "moved in",
    IN_IFS: "in IFS",
    HELD: "held",
    EXCLUDED: "excluded",
    MOVED_OUT: "moved out",
}


money = fmt_decimal


def plain(v: Decimal | None) -> str:
    return "" if v is None else format(v, "f")


def _source_line(t: TieOut) -> str:
    if t.source == "expensify":
        return "Expensify approved totals: re-read from Expensify for the period's window"
    return "Expensify approved totals: from the local fetched copy; " + (
        t.source_note or "Expensify was not re-read"
    )


# ------------------------------------------------------------------------------ text


def render_text(t: TieOut) -> str:
    out: list[str] = []
    state = "BALANCED" if t.balanced else f"{len(t.unexplained)} UNEXPLAINED"
    out.append(f"Period close {t.period.label}: {state}")
    out.append(_source_line(t))
    out.append("IFS amounts: vouchers read back from IFS (EXP: references)")
    for w in t.windows.values():
        where = "" if w.known_to_ifs else " (calendar month: IFS has no such period)"
        out.append(f"  company {w.company} ({w.currency}): {w.date_from} to {w.date_until}{where}")
    head = (
        f"  {'account':<14} {'cost centre':<12}"
        + "".join(f" {COLUMN_TITLES[c]:>13}" for c in COLUMNS)
        + f" {'difference':>13}"
    )
    totals = t.totals()
    for company in sorted({r.company for r in t.rows}):
        rows = [r for r in t.rows if r.company == company]
        currency = rows[0].currency if rows else ""
        out.append("")
        out.append(
            f"Company {company} ({currency}), per account and cost centre "
            f"(code part {t.cost_centre_code_part})"
        )
        out.append(head)
        for r in rows:
            out.append(
                f"  {r.account:<14} {r.cost_centre or '-':<12}"
                + "".join(f" {money(r.amounts[c]):>13}" for c in COLUMNS)
                + f" {money(r.difference):>13}"
            )
        tot = totals.get((company, currency))
        if tot:
            out.append(
                f"  {'total':<14} {'':<12}"
                + "".join(f" {money(tot[c]):>13}" for c in COLUMNS)
                + f" {money(tot['diff']):>13}"
            )
    out.extend(tax_text(t))
    if t.currencies:
        out.append("")
        out.append("In report currency (where it differs from the company's)")
        for c in t.currencies:
            out.append(
                f"  company {c.company} {c.currency}:"
                + "".join(f" {COLUMN_TITLES[k]} {money(c.amounts[k])};" for k in COLUMNS)
            )
    for (company, currency), amount in sorted(t.unconverted.items()):
        out.append(
            f"  note: {money(amount)} {currency} in company {company} has no IFS rate yet "
            "(held; in report currency only)"
        )
    counts: dict[str, int] = {}
    for rep in t.reports:
        counts[rep.disposition] = counts.get(rep.disposition, 0) + 1
    out.append("")
    out.append(
        "Reports: " + ", ".join(f"{n} {d}" for d, n in sorted(counts.items()))
        if counts
        else "Reports: none approved in this period"
    )
    listed = [rep for rep in t.reports if rep.disposition not in ("posted", "nothing")]
    if listed:
        out.append(
            f"  {'report':<12} {'company':<8} {'disposition':<12} {'approved':<10} "
            f"{'amount':>14} {'in IFS':>14}  reason"
        )
        for rep in listed:
            out.append(
                f"  {rep.report_id:<12} {rep.company:<8} {rep.disposition:<12} {rep.approved:<10} "
                f"{money(rep.approved_amount):>14} {money(rep.ifs_amount):>14}  "
                f"{rep.currency} {rep.reason}"
            )
    if t.card_spend is not None:
        out.append("")
        out.extend(card_spend_text(t.card_spend))
    if t.accrued_by_employee:
        out.append("")
        out.append(
            f"Accrued expenses per employee at the end of {t.period.label} (beside the tie-out)"
        )
        out.append(f"  {'company':<8} {'employee':<20} {'balance':>14}")
        for b in t.accrued_by_employee:
            out.append(
                f"  {b.company:<8} {b.employee or '(none)':<20} {money(b.balance):>14} {b.currency}"
            )
    return visible_text("\n".join(out)) + "\n"


TAX_HEADING = "Tax per account: net + tax = gross (IFS posts the tax to its tax accounts)"


def tax_text(t: TieOut) -> list[str]:
    """The tax section of the text report; nothing where no line carries tax."""
    rows = t.tax_by_account()
    if not rows:
        return []
    out = ["", TAX_HEADING]
    out.append(
        f"  {'company':<8} {'account':<14}"
        + "".join(f" {h:>13}" for h in ("approved net", "tax", "gross", "IFS net", "tax", "gross"))
    )
    for r in rows:
        out.append(
            f"  {r.company:<8} {r.account:<14}"
            + "".join(
                f" {money(v):>13}"
                for c in (APPROVED, IN_IFS)
                for v in (r.net(c), r.tax[c], r.gross[c])
            )
            + f" {r.currency}"
        )
    return out


def card_spend_heading(c: CardSpendSection) -> str:
    return (
        "Card spend not yet reported (separate: not in the tie-out above; an accrual would "
        f"debit the expense account, credit {c.clearing_account})"
    )


def card_spend_text(c: CardSpendSection) -> list[str]:
    out = [card_spend_heading(c)]
    if c.status != CARDS_READ:
        out.append(f"  not read: {c.note}")
        return out
    out.append(f"  {c.note}")
    rows = c.rows()
    totals = c.totals()
    for company, currency in sorted(totals):
        day = c.voucher_dates.get(company)
        out.append(f"  Company {company} ({currency}), accrual dated {day}")
        out.append(f"    {'account':<14} {'cost centre':<12} {'expenses':>8} {'amount':>14}")
        for r in rows:
            if r.company == company:
                out.append(
                    f"    {r.account:<14} {r.cost_centre or '-':<12} {r.count:>8} "
                    f"{money(r.amount):>14}"
                )
        n = sum(r.count for r in rows if r.company == company)
        out.append(f"    {'total':<14} {'':<12} {n:>8} {money(totals[(company, currency)]):>14}")
    if not totals:
        out.append("  nothing to accrue")
    for a in c.accruals:
        out.append(f"  Company {a.company} accrual {a.reference}: {a.describe()}")
    blocked = c.not_accruable
    if blocked:
        amounts = ", ".join(f"{money(v)} {cur}" for cur, v in c.not_accruable_totals().items())
        out.append(f"  Not accruable ({len(blocked)}; {amounts}), listed with the reason:")
        for ln in blocked:
            out.append(
                f"    {ln.transaction_id:<20} {ln.posted:<10} {money(ln.amount):>12} "
                f"{ln.currency} {ln.owner} {ln.merchant!r}: {ln.reason}"
            )
    for u in c.unreadable:
        out.append(f"  unreadable in the export: {u.where}: {u.reason}")
    return out


# ------------------------------------------------------------------------------ CSV

CSV_COLUMNS = (
    "kind",
    "company",
    "currency",
    "account",
    "costCentre",
    *COLUMNS,
    "difference",
    "reportID",
    "employee",
    "approvedDate",
    "disposition",
    "reason",
    "reportCurrency",
    "approvedReportCurrency",
    "ifsReportCurrency",
    "approvedAccounting",
    "ifsAccounting",
    "vouchers",
    # Card spend not yet reported (kinds card-spend and card-expense): beside the tie-out.
    "cardSpend",
    "expenses",
    "transactionID",
    "cardOwner",
    "posted",
    "merchant",
    "category",
    "cardCurrency",
    "cardAmount",
)


def render_csv(t: TieOut) -> str:
    """One CSV: a `tie-out` row per (company, account, cost centre), a `total` row per company,
    a `report-currency` row per foreign currency, then a `report` row per report."""
    buf = io.StringIO()
    w = _SafeCsvWriter(buf)
    w.writeheader()
    for r in t.rows:
        w.writerow(
            {
                "kind": "tie-out",
                "company": r.company,
                "currency": r.currency,
                "account": r.account,
                "costCentre": r.cost_centre,
                **{c: plain(r.amounts[c]) for c in COLUMNS},
                "difference": plain(r.difference),
            }
        )
    for (company, currency), tot in sorted(t.totals().items()):
        w.writerow(
            {
                "kind": "total",
                "company": company,
                "currency": currency,
                **{c: plain(tot[c]) for c in COLUMNS},
                "difference": plain(tot["diff"]),
            }
        )
    for c in t.currencies:
        w.writerow(
            {
                "kind": "report-currency",
                "company": c.company,
                "currency": c.currency,
                **{k: plain(c.amounts[k]) for k in COLUMNS},
            }
        )
    for rep in t.reports:
        w.writerow(
            {
                "kind": "report",
                "company": rep.company,
                "currency": rep.company_currency,
                "reportID": rep.report_id,
                "employee": rep.employee,
                "approvedDate": rep.approved,
                "disposition": rep.disposition,
                "reason": rep.reason,
                "reportCurrency": rep.currency,
                "approvedReportCurrency": plain(rep.approved_amount),
                "ifsReportCurrency": plain(rep.ifs_amount),
                "approvedAccounting": plain(rep.approved_accounting),
                "ifsAccounting": plain(rep.ifs_accounting),
                "vouchers": " ".join(rep.vouchers),
            }
        )
    cards = t.card_spend
    if cards is not None and cards.status == CARDS_READ:
        for cr in cards.rows():
            w.writerow(
                {
                    "kind": "card-spend",
                    "company": cr.company,
                    "currency": cr.currency,
                    "account": cr.account,
                    "costCentre": cr.cost_centre,
                    "cardSpend": plain(cr.amount),
                    "expenses": cr.count,
                }
            )
        for a in cards.accruals:
            w.writerow(
                {
                    "kind": "card-accrual",
                    "company": a.company,
                    "currency": a.currency,
                    "cardSpend": plain(a.current),
                    "disposition": a.state,
                    "vouchers": " ".join(v for v in (a.voucher, a.reversal_voucher) if v),
                    "difference": plain(a.difference),
                    "reason": a.describe(),
                }
            )
        for ln in cards.lines:
            w.writerow(
                {
                    "kind": "card-expense",
                    "company": ln.company,
                    "currency": ln.company_currency,
                    "account": ln.account,
                    "costCentre": ln.cost_centre,
                    "cardSpend": plain(ln.accounting),
                    "reason": ln.reason,
                    "transactionID": ln.transaction_id,
                    "cardOwner": ln.owner,
                    "posted": ln.posted,
                    "merchant": ln.merchant,
                    "category": ln.category,
                    "cardCurrency": ln.currency,
                    "cardAmount": plain(ln.amount),
                }
            )
    return buf.getvalue()


class _SafeCsvWriter:
    """csv.DictWriter over CSV_COLUMNS whose every cell goes through `csv_cell`."""

    def __init__(self, buf: io.StringIO) -> None:
        self._w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")

    def writeheader(self) -> None:
        self._w.writeheader()

    def writerow(self, row: dict[str, object]) -> None:
        self._w.writerow({k: csv_cell(v) for k, v in row.items()})


# ------------------------------------------------------------------------------ HTML

_PALETTE = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#718096")


def bar_chart_svg(
    title: str,
    items: Sequence[tuple[str, Decimal]],
    unit: str,
    *,
    colour: str = _PALETTE[0],
    limit: int = 12,
    width: int = 640,
) -> str:
    """A horizontal bar chart as inline SVG: one bar per item, labelled with its amount.
    More than `limit` items: the rest are summed into "other"."""
    shown = list(items[:limit])
    rest = items[limit:]
    if rest:
        shown.append((f"other ({len(rest)})", sum((v for _, v in rest), ZERO)))
    bar_h, gap, label_w, value_w, top = 18, 6, 150, 120, 28
    height = top + max(1, len(shown)) * (bar_h + gap) + 8
    plot_w = width - label_w - value_w - 10
    peak = max((abs(v) for _, v in shown), default=ZERO) or Decimal(1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<text x="0" y="16" font-size="14" font-weight="bold">{_e(title)}</text>',
    ]
    if not shown:
        parts.append(f'<text x="0" y="{top + 12}" font-size="12" fill="#555">nothing</text>')
    for i, (label, value) in enumerate(shown):
        y = top + i * (bar_h + gap)
        length = int((abs(value) / peak) * plot_w) if peak else 0
        fill = colour if value >= 0 else "#c53030"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" font-size="12" text-anchor="end">'
            f"{_e(label[:24])}</text>"
            f'<rect x="{label_w}" y="{y}" width="{max(length, 1)}" height="{bar_h}" '
            f'fill="{fill}"><title>{_e(label)}: {money(value)} {_e(unit)}</title></rect>'
            f'<text x="{label_w + max(length, 1) + 6}" y="{y + 13}" font-size="12">'
            f"{money(value)} {_e(unit)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em;
       color: #1a202c; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.state { font-weight: bold; padding: 0.2em 0.6em; border-radius: 4px; }
.ok { background: #c6f6d5; } .bad { background: #fed7d7; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border-bottom: 1px solid #e2e8f0; padding: 0.25em 0.6em; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.total td { font-weight: bold; border-top: 2px solid #4a5568; }
tr.unexplained td { background: #fff5f5; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5em; }
.meta { color: #4a5568; font-size: 0.9em; }
@media print { body { margin: 1cm; } .charts { display: block; } h2 { page-break-after: avoid; }
  table { page-break-inside: auto; } tr { page-break-inside: avoid; } }
"""


def _e(text: object) -> str:
    """Escaped for HTML text and attributes (quotes included), controls made visible."""
    return html.escape(visible(text), quote=True)


def _card_spend_html(c: CardSpendSection) -> list[str]:
    p = [
        '<h2 id="card-spend">Card spend not yet reported</h2>',
        f'<p class="meta">Separate from the tie-out above (it does not change it). '
        f"{_e(c.note)}. An accrual would debit the expense account and credit "
        f"{_e(c.clearing_account)}.</p>",
    ]
    if c.status != CARDS_READ:
        return p
    totals = c.totals()
    for company, currency in sorted(totals):
        p.append(
            f"<h3>Company {_e(company)} ({_e(currency)}), accrual dated "
            f"{_e(c.voucher_dates.get(company, ''))}</h3>"
        )
        p.append(
            "<table><tr><th>account</th><th>cost centre</th><th class=n>expenses</th>"
            "<th class=n>amount</th></tr>"
        )
        rows = [r for r in c.rows() if r.company == company]
        for r in rows:
            p.append(
                f"<tr><td>{_e(r.account)}</td><td>{_e(r.cost_centre or '-')}</td>"
                f"<td class=n>{r.count}</td><td class=n>{money(r.amount)}</td></tr>"
            )
        p.append(
            f'<tr class="total"><td>total</td><td></td><td class=n>'
            f"{sum(r.count for r in rows)}</td><td class=n>{money(totals[(company, currency)])}"
            "</td></tr></table>"
        )
    if c.accruals:
        p.append("<h3>Accrual</h3><table><tr><th>company</th><th>reference</th><th>state</th></tr>")
        for a in c.accruals:
            cls = ' class="unexplained"' if a.difference or a.note else ""
            p.append(
                f"<tr{cls}><td>{_e(a.company)}</td><td>{_e(a.reference)}</td>"
                f"<td>{_e(a.describe())}</td></tr>"
            )
        p.append("</table>")
    blocked = c.not_accruable
    if blocked:
        p.append(
            "<h3>Not accruable</h3><table><tr><th>transaction</th><th>posted</th>"
            "<th>card holder</th><th>merchant</th><th class=n>amount</th><th>currency</th>"
            "<th>reason</th></tr>"
        )
        for ln in blocked:
            p.append(
                f'<tr class="unexplained"><td>{_e(ln.transaction_id)}</td><td>{_e(ln.posted)}'
                f"</td><td>{_e(ln.owner)}</td><td>{_e(ln.merchant)}</td>"
                f"<td class=n>{money(ln.amount)}</td><td>{_e(ln.currency)}</td>"
                f"<td>{_e(ln.reason)}</td></tr>"
            )
        p.append("</table>")
    return p


def render_html(t: TieOut, *, title: str = "") -> str:
    """A printable page a controller can file: state, sources, charts, the tie-out per company,
    every report not simply posted, and the unexplained items first."""
    heading = title or f"Period close {t.period.label}"
    state_cls = "ok" if t.balanced else "bad"
    state = (
        "Balanced: every difference explained"
        if t.balanced
        else (f"{len(t.unexplained)} unexplained item(s)")
    )
    p: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(heading)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(heading)}</h1>",
        f'<p><span class="state {state_cls}">{_e(state)}</span></p>',
        f'<p class="meta">{_e(_source_line(t))}.<br>IFS amounts: vouchers read back from IFS.'
        f"<br>Read at {_e(t.read_at)}. Cost centre = code part {_e(t.cost_centre_code_part)}."
        "</p>",
        "<ul class=meta>",
    ]
    for w in t.windows.values():
        where = "" if w.known_to_ifs else " (calendar month: IFS has no such period)"
        p.append(
            f"<li>Company {_e(w.company)} ({_e(w.currency)}): {_e(w.date_from)} to "
            f"{_e(w.date_until)}{_e(where)}</li>"
        )
    p.append("</ul>")

    if t.unexplained:
        p.append(
            "<h2>Unexplained</h2><table><tr><th>report</th><th>company</th><th>reason</th></tr>"
        )
        for rep in t.unexplained:
            p.append(
                f'<tr class="unexplained"><td>{_e(rep.report_id)}</td><td>{_e(rep.company)}</td>'
                f"<td>{_e(rep.reason)}</td></tr>"
            )
        p.append("</table>")

    # Charts: one set per company currency, so bars are never mixed across currencies.
    p.append("<h2>The month at a glance</h2>")
    companies = sorted({r.company for r in t.rows})
    for company in companies:
        currency = t.windows[company].currency if company in t.windows else ""
        accounts = [(a, v) for c, a, v in t.by_account(IN_IFS) if c == company]
        centres = [(k or "(none)", v) for c, k, v in t.by_cost_centre(IN_IFS) if c == company]
        held = [(a, v) for c, a, v in t.by_account(HELD) if c == company]
        p.append('<div class="charts">')
        p.append(bar_chart_svg(f"Accrued in IFS by account — {company}", accounts, currency))
        p.append(
            bar_chart_svg(
                f"Accrued in IFS by cost centre — {company}",
                centres,
                currency,
                colour=_PALETTE[2],
            )
        )
        p.append(
            bar_chart_svg(f"Still held, by account — {company}", held, currency, colour=_PALETTE[1])
        )
        p.append("</div>")
    reasons = t.held_by_reason()
    if reasons:
        p.append(
            "<table><tr><th>held because</th><th class=n>reports</th>"
            "<th class=n>amount (report currency)</th></tr>"
        )
        for kind, n, amounts in reasons:
            text = ", ".join(f"{money(v)} {cur}" for cur, v in sorted(amounts.items()))
            p.append(f"<tr><td>{_e(kind)}</td><td class=n>{n}</td><td class=n>{_e(text)}</td></tr>")
        p.append("</table>")

    totals = t.totals()
    for company in companies:
        rows = [r for r in t.rows if r.company == company]
        currency = rows[0].currency if rows else ""
        p.append(f"<h2>Tie-out — company {_e(company)} ({_e(currency)})</h2>")
        p.append("<table><tr><th>account</th><th>cost centre</th>")
        p.extend(f"<th class=n>{_e(COLUMN_TITLES[c])}</th>" for c in COLUMNS)
        p.append("<th class=n>difference</th></tr>")
        for r in rows:
            cls = ' class="unexplained"' if r.difference else ""
            p.append(f"<tr{cls}><td>{_e(r.account)}</td><td>{_e(r.cost_centre or '-')}</td>")
            p.extend(f"<td class=n>{money(r.amounts[c])}</td>" for c in COLUMNS)
            p.append(f"<td class=n>{money(r.difference)}</td></tr>")
        tot = totals.get((company, currency))
        if tot:
            p.append('<tr class="total"><td>total</td><td></td>')
            p.extend(f"<td class=n>{money(tot[c])}</td>" for c in COLUMNS)
            p.append(f"<td class=n>{money(tot['diff'])}</td></tr>")
        p.append("</table>")
    tax_rows = t.tax_by_account()
    if tax_rows:
        p.append(f"<h2>Tax</h2><p class=meta>{_e(TAX_HEADING)}</p><table><tr><th>company</th>")
        p.append("<th>account</th><th class=n>approved net</th><th class=n>tax</th>")
        p.append("<th class=n>gross</th><th class=n>IFS net</th><th class=n>tax</th>")
        p.append("<th class=n>gross</th></tr>")
        for tr in tax_rows:
            p.append(f"<tr><td>{_e(tr.company)}</td><td>{_e(tr.account)}</td>")
            p.extend(
                f"<td class=n>{money(v)}</td>"
                for c in (APPROVED, IN_IFS)
                for v in (tr.net(c), tr.tax[c], tr.gross[c])
            )
            p.append("</tr>")
        p.append("</table>")
    if t.currencies:
        p.append("<h2>In report currency</h2><table><tr><th>company</th><th>currency</th>")
        p.extend(f"<th class=n>{_e(COLUMN_TITLES[c])}</th>" for c in COLUMNS)
        p.append("</tr>")
        for c in t.currencies:
            p.append(f"<tr><td>{_e(c.company)}</td><td>{_e(c.currency)}</td>")
            p.extend(f"<td class=n>{money(c.amounts[k])}</td>" for k in COLUMNS)
            p.append("</tr>")
        p.append("</table>")
    for (company, currency), amount in sorted(t.unconverted.items()):
        p.append(
            f'<p class="meta">{money(amount)} {_e(currency)} held in company {_e(company)} has '
            "no IFS rate yet: counted in report currency only.</p>"
        )

    listed = [rep for rep in t.reports if rep.disposition not in ("posted", "nothing")]
    posted = sum(1 for rep in t.reports if rep.disposition == "posted")
    p.append(
        f"<h2>Reports not simply posted</h2><p class=meta>{posted} report(s) posted "
        "in the period as approved are not listed one by one (see the CSV).</p>"
    )
    if listed:
        p.append(
            "<table><tr><th>report</th><th>company</th><th>employee</th><th>approved</th>"
            "<th>disposition</th><th class=n>amount</th><th class=n>in IFS</th><th>currency</th>"
            "<th>reason</th></tr>"
        )
        for rep in listed:
            cls = ' class="unexplained"' if not rep.explained else ""
            p.append(
                f"<tr{cls}><td>{_e(rep.report_id)}</td><td>{_e(rep.company)}</td>"
                f"<td>{_e(rep.employee)}</td><td>{_e(rep.approved)}</td><td>{_e(rep.disposition)}</td>"
                f"<td class=n>{money(rep.approved_amount)}</td><td class=n>{money(rep.ifs_amount)}"
                f"</td><td>{_e(rep.currency)}</td><td>{_e(rep.reason)}</td></tr>"
            )
        p.append("</table>")
    if t.card_spend is not None:
        p.extend(_card_spend_html(t.card_spend))
    p.append("</body></html>")
    return "\n".join(p) + "\n"
