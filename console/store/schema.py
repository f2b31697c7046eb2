"""The state file's schema: report statuses, posting outcomes, the cursor keys, and the
versioned migrations (`PRAGMA user_version`), each applied in its own transaction."""

from __future__ import annotations

STATUSES = ("pending", "held", "ready", "posting", "posted", "failed", "excluded")

# Expensify statuses (as the export prints them, upper-cased) of a report sent back to its
# submitter: not approved any more, whatever it was when it was fetched.
SENT_BACK_STATES = ("OPEN", "PROCESSING", "SUBMITTED")

OUTCOMES = ("intent", "posted", "failed", "unknown")


# The cursor key of the file system that served the last card reconciliation download.
RECONCILIATION_FILE_SYSTEM = "expensify.reconciliation_file_system"


# The cursor key of the policies' approval modes (JSON {"day", "modes"}), read once a day.
APPROVAL_MODES = "expensify.approval_modes"


# The outcome columns of every posting table (console/ledger.py): the intent, written before
# the request, then what IFS answered. Released migrations are built from it: never edit it.
_OUTCOME_COLUMNS = """body_digest TEXT NOT NULL,
            intent_at TEXT NOT NULL,
            outcome TEXT NOT NULL DEFAULT 'intent',
            voucher_no TEXT,
            posted_at TEXT,"""

# Each entry migrates from version index to index+1. Never edit a released entry: append.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE reports (
            report_id TEXT PRIMARY KEY,
            policy_id TEXT NOT NULL DEFAULT '',
            employee TEXT NOT NULL DEFAULT '',
            report_name TEXT NOT NULL DEFAULT '',
            approved TEXT NOT NULL DEFAULT '',
            currency TEXT NOT NULL DEFAULT '',
            total_minor INTEGER NOT NULL DEFAULT 0,
            line_count INTEGER NOT NULL DEFAULT 0,
            content_hash TEXT NOT NULL DEFAULT '',
            raw TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'pending',
            reason TEXT NOT NULL DEFAULT '',
            company TEXT NOT NULL DEFAULT '',
            held_since TEXT,
            first_seen TEXT NOT NULL,
            updated TEXT NOT NULL
        )""",
        "CREATE INDEX reports_status ON reports(status, approved)",
        """CREATE TABLE lines (
            report_id TEXT NOT NULL,
            transaction_id TEXT NOT NULL,
            position INTEGER NOT NULL DEFAULT 0,
            merchant TEXT NOT NULL DEFAULT '',
            category TEXT NOT NULL DEFAULT '',
            tag TEXT NOT NULL DEFAULT '',
            amount_minor INTEGER NOT NULL DEFAULT 0,
            currency TEXT NOT NULL DEFAULT '',
            reimbursable INTEGER NOT NULL DEFAULT 1,
            created TEXT NOT NULL DEFAULT '',
            comment TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (report_id, transaction_id)
        )""",
        """CREATE TABLE mapping_rules (
            kind TEXT NOT NULL,
            policy_id TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL,
            rule TEXT NOT NULL,
            actor TEXT NOT NULL DEFAULT '',
            updated TEXT NOT NULL,
            PRIMARY KEY (kind, policy_id, source)
        )""",
        """CREATE TABLE ifs_dimensions (
            company TEXT NOT NULL,
            code_part TEXT NOT NULL,
            value TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            valid_from TEXT NOT NULL,
            valid_until TEXT NOT NULL,
            fetched_at TEXT NOT NULL,
            PRIMARY KEY (company, code_part, value)
        )""",
        f"""CREATE TABLE postings (
            id INTEGER PRIMARY KEY,
            report_id TEXT NOT NULL,
            reference TEXT NOT NULL,
            version TEXT NOT NULL,
            company TEXT NOT NULL,
            {_OUTCOME_COLUMNS}
            labelled_at TEXT,
            error TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX postings_report ON postings(report_id)",
        "CREATE INDEX postings_outcome ON postings(outcome, labelled_at)",
        """CREATE TABLE holds (
            report_id TEXT NOT NULL,
            code TEXT NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            company TEXT NOT NULL DEFAULT '',
            first_held TEXT NOT NULL,
            last_checked TEXT NOT NULL,
            PRIMARY KEY (report_id, code)
        )""",
        "CREATE INDEX holds_code ON holds(code)",
        """CREATE TABLE exclusions (
            report_id TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            actor TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            started TEXT NOT NULL,
            finished TEXT,
            actor TEXT NOT NULL,
            mode TEXT NOT NULL,
            summary TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE expensify_window (
            key TEXT PRIMARY KEY,
            stamps TEXT NOT NULL DEFAULT '[]'
        )""",
        """CREATE TABLE cursor (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE audit_events (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            type TEXT NOT NULL,
            report_id TEXT,
            transaction_ids TEXT,
            voucher TEXT,
            summary TEXT NOT NULL DEFAULT '',
            request_digest TEXT,
            response_digest TEXT,
            data TEXT NOT NULL DEFAULT '{}',
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        "CREATE INDEX audit_report ON audit_events(report_id, seq)",
        "CREATE INDEX audit_type ON audit_events(type, seq)",
        # The chain head, so that deleting the newest events is detected too.
        """CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
    ),
    # 2: accrual reversals, watching posted reports, changes after posting (console/reversal.py)
    (
        f"""CREATE TABLE reversals (
            id INTEGER PRIMARY KEY,
            report_id TEXT NOT NULL,
            accrual_reference TEXT NOT NULL,
            reference TEXT NOT NULL,
            groups TEXT NOT NULL,
            cause TEXT NOT NULL,
            company TEXT NOT NULL,
            voucher_date TEXT NOT NULL,
            {_OUTCOME_COLUMNS}
            error TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX reversals_report ON reversals(report_id, accrual_reference)",
        "CREATE INDEX reversals_outcome ON reversals(outcome)",
        """CREATE TABLE watched (
            report_id TEXT PRIMARY KEY,
            last_checked TEXT NOT NULL DEFAULT '',
            expensify_status TEXT NOT NULL DEFAULT '',
            reimbursed TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE report_changes (
            report_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            accrual_reference TEXT NOT NULL,
            new_hash TEXT NOT NULL DEFAULT '',
            new_raw TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL DEFAULT 'open',
            detected_at TEXT NOT NULL,
            confirmed_by TEXT NOT NULL DEFAULT '',
            confirmed_at TEXT
        )""",
    ),
    # 3: card spend not yet reported, accrued at close and reversed (console/card_accrual.py)
    (
        f"""CREATE TABLE card_accruals (
            id INTEGER PRIMARY KEY,
            period TEXT NOT NULL,
            company TEXT NOT NULL,
            kind TEXT NOT NULL,
            reference TEXT NOT NULL,
            voucher_date TEXT NOT NULL,
            amount TEXT NOT NULL,
            currency TEXT NOT NULL,
            {_OUTCOME_COLUMNS}
            error TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX card_accruals_reference ON card_accruals(reference, outcome)",
        "CREATE INDEX card_accruals_outcome ON card_accruals(outcome, kind)",
    ),
    # 4: one posting ledger for every voucher kind (console/ledger.py): the three tables of
    # versions 1-3 become rows of one, in the order their intents were written.
    (
        f"""CREATE TABLE ledger (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            reference TEXT NOT NULL,
            company TEXT NOT NULL,
            report_id TEXT NOT NULL DEFAULT '',
            period TEXT NOT NULL DEFAULT '',
            version TEXT NOT NULL DEFAULT '',
            accrual_reference TEXT NOT NULL DEFAULT '',
            groups TEXT NOT NULL DEFAULT '',
            cause TEXT NOT NULL DEFAULT '',
            voucher_date TEXT NOT NULL DEFAULT '',
            amount TEXT NOT NULL DEFAULT '',
            currency TEXT NOT NULL DEFAULT '',
            {_OUTCOME_COLUMNS}
            labelled_at TEXT,
            error TEXT NOT NULL DEFAULT ''
        )""",
        """INSERT INTO ledger (kind, reference, company, report_id, period, version,
            accrual_reference, groups, cause, voucher_date, amount, currency, body_digest,
            intent_at, outcome, voucher_no, posted_at, labelled_at, error)
        SELECT kind, reference, company, report_id, period, version, accrual_reference, groups,
            cause, voucher_date, amount, currency, body_digest, intent_at, outcome, voucher_no,
            posted_at, labelled_at, error FROM (
            SELECT 'accrual' AS kind, reference, company, report_id, '' AS period, version,
                '' AS accrual_reference, '' AS groups, '' AS cause, '' AS voucher_date,
                '' AS amount, '' AS currency, body_digest, intent_at, outcome, voucher_no,
                posted_at, labelled_at, error, 1 AS src, id FROM postings
            UNION ALL
            SELECT 'reversal', reference, company, report_id, '', '', accrual_reference, groups,
                cause, voucher_date, '', '', body_digest, intent_at, outcome, voucher_no,
                posted_at, NULL, error, 2, id FROM reversals
            UNION ALL
            SELECT 'card-' || kind, reference, company, '', period, '', '', '', '',
                voucher_date, amount, currency, body_digest, intent_at, outcome, voucher_no,
                posted_at, NULL, error, 3, id FROM card_accruals
        ) ORDER BY intent_at, src, id""",
        "DROP TABLE postings",
        "DROP TABLE reversals",
        "DROP TABLE card_accruals",
        "CREATE INDEX ledger_report ON ledger(report_id, kind)",
        "CREATE INDEX ledger_reference ON ledger(reference, outcome)",
        "CREATE INDEX ledger_outcome ON ledger(outcome, kind, labelled_at)",
    ),
)


SCHEMA_VERSION = len(_MIGRATIONS)
