"""Is the state file fit to use? One check before the store opens it, one translation of what
goes wrong later (a full disk, a file turned read-only), both ending in `DamagedState`: one
sentence naming the file, what is wrong and the way out, and exit 7 (design.md §2).

`check` runs where the store opens the file (`Store.__init__`), so every command that reads the
state (`--auto`, `held`, `audit verify`, `status`, the TUI, ...) refuses a damaged file before
it trusts a row of it. It costs a few milliseconds: SQLite's `PRAGMA quick_check` (every page
of every b-tree read and checked, not the slower index-against-table comparison of
`integrity_check`), the schema version, and the file's header and length.

`classify` turns an error raised while the state is in use (`sqlite3` "database or disk is
full", "attempt to write a readonly database", a file cut short under a running process; an
`OSError` creating the state folder) into the same sentence; anything else is not ours.

`backup` copies the state with SQLite's online backup API: a consistent copy even while a
cycle writes, never a torn file. Restoring is a file copy (docs/reliability.md): safe because
the ledger asks IFS which references it already holds before a voucher's first request.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from console.errors import ConsoleError

# SQLite primary result codes (the low byte of `sqlite_errorcode`).
_SQLITE_PERM = 3
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26

_HEADER = b"SQLite format 3\x00"

RESTORE = (
    "restore your latest copy from `ml-console state backup FILE` as docs/reliability.md "
    "says, or make a new one from IFS and Expensify with `ml-console state rebuild`, and run "
    "again (the console asks IFS what it already holds before posting, so nothing posts twice)"
)


class DamagedState(ConsoleError):
    """The local state file is damaged, unreadable, read-only, full or newer than this build."""

    exit_code = 7

    def __init__(self, path: Path, what: str, way_out: str = RESTORE) -> None:
        super().__init__(f"the state file {path} {what}: {way_out}")
        self.path = path
        self.what = what


def check(path: Path, schema_version: int) -> None:
    """Raise DamagedState unless the file at `path` (if there is one) can be used by a build
    that knows schema versions up to `schema_version`. A missing or empty file is fine: the
    store creates it."""
    path = Path(path)
    folder = path.parent
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise _read_only(path, folder)
    if not path.exists():
        return
    if not os.access(path, os.R_OK):
        raise DamagedState(
            path, "cannot be read by this user", f"give this user read and write access to {path}"
        )
    if not os.access(path, os.W_OK):
        raise _read_only(path, path)
    for side in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        # Left behind by a run as another user (sudo): SQLite could not open the file.
        if side.exists() and not os.access(side, os.R_OK | os.W_OK):
            raise _read_only(path, side)
    try:
        size = path.stat().st_size
        if size == 0:
            return
        with path.open("rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise _from_os_error(exc, path) from exc
    if len(header) < 100 or not header.startswith(_HEADER):
        raise DamagedState(path, "is not a SQLite database (its first page is damaged or gone)")
    wal = Path(f"{path}-wal")
    if not wal.exists() or wal.stat().st_size == 0:
        # With a live WAL a checkpoint may be extending the file right now: trust SQLite alone.
        _check_length(path, header, size)
    _check_content(path, schema_version)


def _check_length(path: Path, header: bytes, size: int) -> None:
    """A file shorter than its header says (a copy cut short, a disk that filled up while it
    was written). The header's page count is trusted only where SQLite trusts it: when the
    version-valid-for number equals the change counter."""
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid = header[92:96] == header[24:28]
    if valid and pages and size < pages * page_size:
        raise DamagedState(path, f"is truncated ({size} of {pages * page_size} bytes are there)")


def _check_content(path: Path, schema_version: int) -> None:
    try:
        db = sqlite3.connect(str(path), timeout=30.0)
    except sqlite3.Error as exc:
        raise classify(exc, path) or DamagedState(path, f"cannot be opened ({exc})") from exc
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > schema_version:
            raise DamagedState(
                path,
                f"has schema version {version}, newer than this ml-console knows "
                f"({schema_version})",
                "upgrade ml-console to the version that wrote it (or restore a copy made "
                "with `ml-console state backup FILE` by this version, see docs/reliability.md)",
            )
        rows = db.execute("PRAGMA quick_check(1)").fetchall()
    except sqlite3.Error as exc:
        raise classify(exc, path) or DamagedState(path, f"cannot be read ({exc})") from exc
    finally:
        db.close()
    first = str(rows[0][0]) if rows else "no answer"
    if first != "ok":
        detail = " ".join(first.replace("*** in database main ***", "").split())
        raise DamagedState(path, f"is damaged (SQLite's quick_check: {detail[:120]})")


def classify(exc: BaseException, path: Path) -> DamagedState | None:
    """The DamagedState an error met while using the state file at `path` stands for, or None
    when the error is not about that file. The errors it was raised while handling count too:
    SQLite rolls a transaction back by itself on a full disk, so the store's own ROLLBACK then
    fails with "no transaction is active" and hides the cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _classify_one(current, Path(path))
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _classify_one(exc: BaseException, path: Path) -> DamagedState | None:
    if isinstance(exc, DamagedState):
        return exc
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary is None and isinstance(exc, sqlite3.DatabaseError):
            text = str(exc).lower()
            primary = (
                _SQLITE_FULL
                if "full" in text
                else _SQLITE_READONLY
                if "readonly" in text
                else _SQLITE_CORRUPT
                if "malformed" in text
                else _SQLITE_NOTADB
                if "not a database" in text
                else None
            )
        if primary == _SQLITE_FULL:
            return _full(path)
        if primary in (_SQLITE_READONLY, _SQLITE_PERM):
            return _read_only(path, path)
        if primary == _SQLITE_CANTOPEN:
            return DamagedState(
                path,
                "cannot be opened",
                f"check that {path.parent} exists and this user may write there",
            )
        if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return DamagedState(path, f"is damaged ({exc})")
        if primary == _SQLITE_IOERR:
            return DamagedState(
                path, f"could not be read or written ({exc})", "check the disk, then " + RESTORE
            )
        return None
    if isinstance(exc, OSError):
        name = exc.filename if isinstance(exc.filename, str) else ""
        if not name or not _within(Path(name), path.parent):
            return None
        return _from_os_error(exc, path)
    return None


def _from_os_error(exc: OSError, path: Path) -> DamagedState:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _full(path)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return _read_only(path, Path(exc.filename) if isinstance(exc.filename, str) else path)
    return DamagedState(
        path, f"could not be read or written ({exc.strerror or exc})", "check the disk"
    )


def _full(path: Path) -> DamagedState:
    return DamagedState(
        path,
        "could not be written: the disk is full",
        f"free space on the disk that holds {path.parent} and run again (the write that "
        "failed was rolled back; the next run carries on from there)",
    )


def _read_only(path: Path, where: Path) -> DamagedState:
    return DamagedState(
        path,
        f"cannot be written ({where} is read-only for this user)",
        f"make {where} writable for the user that runs ml-console, or point --home elsewhere",
    )


def _within(name: Path, folder: Path) -> bool:
    try:
        name.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def backup(path: Path, target: Path, schema_version: int) -> int:
    """Copy the state at `path` to `target` (a new file, 0600) with SQLite's online backup,
    after checking the source. Returns the copy's size in bytes."""
    path, target = Path(path), Path(target)
    if not path.exists():
        raise DamagedState(
            path, "does not exist", "nothing has been synced here yet: there is nothing to copy"
        )
    check(path, schema_version)
    partial = target.with_name(target.name + ".partial")
    try:
        fd = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        src = sqlite3.connect(str(path), timeout=30.0)
        try:
            dst = sqlite3.connect(str(partial))
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target.stat().st_size
