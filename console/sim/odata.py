"""OData v4 query support for the IFS Cloud simulator.

What a projection needs to answer collections the way IFS's OData provider does: the entity
model (typed properties, keys, navigations), a `$filter` parser and three-valued evaluator,
`$select`, `$orderby`, `$top`, `$skip`, `$count`, server-driven paging, key predicates,
EDMX `$metadata`, and ETags formed as IFS forms them (reference/ifs-cloud.md §4-5).

Every problem with a request is an `ODataError` carrying the HTTP status, an IFS-style code
and a message that names what was wrong (the token and its 1-based position for a malformed
`$filter`, the property for an unknown one).
"""

from __future__ import annotations

import base64
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

EdmType = Literal["Edm.String", "Edm.Date", "Edm.Decimal", "Edm.Int32", "Edm.Boolean"]
_BOOL = "Edm.Boolean"
_NULL = "null"
_NUMERIC = ("Edm.Int32", "Edm.Decimal")

# Error codes. ODP_RESOURCE_NOTFOUND, ODP_NOT_IMPLEMENTED, ODP_DESERIALIZATION_ERROR and
# ODP_MISSING_PRECONDITION are IFS's own; the query-option codes below follow the same
# naming and are inferred (IFS does not publish them).
URI_SYNTAX_ERROR = "ODP_URI_SYNTAX_ERROR"
PROPERTY_NOTFOUND = "ODP_PROPERTY_NOTFOUND"
RESOURCE_NOTFOUND = "ODP_RESOURCE_NOTFOUND"
NOT_IMPLEMENTED = "ODP_NOT_IMPLEMENTED"
QUERY_LIMIT_EXCEEDED = "ODP_QUERY_LIMIT_EXCEEDED"


class ODataError(Exception):
    """A request the OData provider refuses: HTTP status, IFS-style code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


# ---------------------------------------------------------------- entity model
@dataclass(frozen=True)
class Property:
    name: str
    type: EdmType
    nullable: bool = True
    max_length: int | None = None
    computed: bool = False  # assigned by the server (e.g. VoucherNo from the number series)


@dataclass(frozen=True)
class Navigation:
    name: str
    target: str  # entity type name in the same namespace
    collection: bool = True


@dataclass(frozen=True)
class EntityType:
    name: str
    properties: tuple[Property, ...]
    key: tuple[str, ...]
    navigations: tuple[Navigation, ...] = ()
    _by_name: dict[str, Property] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({p.name: p for p in self.properties})
        missing = [k for k in self.key if k not in self._by_name]
        if missing:
            raise ValueError(f"{self.name}: key {missing} is not a property")

    def prop(self, name: str) -> Property | None:
        return self._by_name.get(name)

    def navigation(self, name: str) -> Navigation | None:
        return next((n for n in self.navigations if n.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.properties)


def _unknown_property(entity: EntityType, name: str, where: str) -> ODataError:
    return ODataError(
        400,
        PROPERTY_NOTFOUND,
        f"Property '{name}' in {where} does not exist on {entity.name}; "
        f"its properties are {', '.join(entity.names)}",
    )


# ---------------------------------------------------------------- values
def json_value(value: Any) -> Any:
    """A typed value as it appears in a JSON payload (Decimal stays Decimal for money.dumps)."""
    if isinstance(value, date):
        return value.isoformat()
    return value


def format_literal(value: Any) -> str:
    """A typed value as an OData URL literal: strings quoted with '' escaping, dates bare."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, date):
        return value.isoformat()
    if value is None:
        return "null"
    return str(value)


def coerce_json(prop: Property, value: Any) -> Any:
    """A JSON body value checked and converted to the property's type; ValueError if wrong."""
    if value is None:
        return None
    if prop.type == "Edm.String":
        if not isinstance(value, str):
            raise ValueError(f"{prop.name} must be a string (Edm.String)")
        if prop.max_length is not None and len(value) > prop.max_length:
            raise ValueError(f"{prop.name} is longer than {prop.max_length} characters")
        return value
    if prop.type == "Edm.Int32":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{prop.name} must be an integer (Edm.Int32)")
        return value
    if prop.type == "Edm.Decimal":
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise ValueError(f"{prop.name} must be a number (Edm.Decimal)")
        return Decimal(value)
    if prop.type == "Edm.Boolean":
        if not isinstance(value, bool):
            raise ValueError(f"{prop.name} must be true or false (Edm.Boolean)")
        return value
    if prop.type == "Edm.Date":
        if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
            raise ValueError(f"{prop.name} must be a date yyyy-mm-dd (Edm.Date)")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{prop.name}: {value!r} is not a calendar date") from None
    raise AssertionError(prop.type)


# ---------------------------------------------------------------- ETag
def objversion_text(moment: datetime) -> str:
    """IFS objversion: the row version as YYYYMMDDHH24MISS."""
    return moment.strftime("%Y%m%d%H%M%S")


def form_etag(objid: str, objversion: datetime) -> str:
    """`W/"` + base64(`W/"<objid>:<objversion>"`) + `"`, as IFS forms it."""
    inner = f'W/"{objid}:{objversion_text(objversion)}"'
    return 'W/"' + base64.b64encode(inner.encode("ascii")).decode("ascii") + '"'


_ROWID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64_digits(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(_ROWID_ALPHABET[n % 64])
        n //= 64
    return "".join(reversed(out))


def rowid(table_no: int, row_no: int) -> str:
    """An Oracle-ROWID-shaped objid (OOOOOOFFFBBBBBBRRR), unique per (table, row)."""
    return (
        _b64_digits(75000 + table_no, 6)
        + _b64_digits(5, 3)
        + _b64_digits(row_no // 90, 6)
        + _b64_digits(row_no % 90, 3)
    )


# ---------------------------------------------------------------- $filter: tokens
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<string>'(?:[^']|'')*')
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:.-]))
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdD]?(?![\w.]))
  | (?P<enum>[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)+'(?:[^']|'')*')
  | (?P<ident>[A-Za-z_][\w]*)
    """,
    re.VERBOSE,
)
_COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
_KEYWORDS = frozenset((*_COMPARISONS, "and", "or", "not", "null", "true", "false"))


@dataclass(frozen=True)
class _Token:
    kind: str  # lparen rparen comma string date number enum ident eof
    text: str
    pos: int  # 1-based column in the $filter text


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        m = _TOKEN_RE.match(text, i)
        if m is None:
            bad = re.match(r"\S+", text[i:])
            snippet = bad.group(0)[:20] if bad else text[i]
            if text[i] == "'":
                raise _syntax(text, i + 1, "string literal is not closed (quote it as 'O''Brien')")
            raise _syntax(text, i + 1, f"unexpected '{snippet}'")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, m.group(0), i + 1))
        i = m.end()
    tokens.append(_Token("eof", "", len(text) + 1))
    return tokens


def _bad_uri(message: str) -> ODataError:
    return ODataError(400, URI_SYNTAX_ERROR, message)


def _syntax(text: str, pos: int, what: str) -> ODataError:
    return _bad_uri(f"Invalid $filter {text!r}: {what} at position {pos}")


# ---------------------------------------------------------------- $filter: AST
# Each node evaluates a row to a value; boolean nodes use three-valued logic (None = unknown),
# so a comparison with a null operand is neither true nor false, as in OData and SQL.
Evaluator = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class _Node:
    type: str  # an Edm type name, Edm.Boolean or "null"
    eval: Evaluator
    pos: int
    text: str


def _cmp(op: str, a: Any, b: Any) -> bool | None:
    if op == "eq":
        return bool(a == b)
    if op == "ne":
        return bool(a != b)
    if a is None or b is None:
        return None
    if op == "gt":
        return bool(a > b)
    if op == "ge":
        return bool(a >= b)
    if op == "lt":
        return bool(a < b)
    return bool(a <= b)


def _kleene(decides: bool, a: bool | None, b: bool | None) -> bool | None:
    """Three-valued `and` (decides=False) or `or` (decides=True): an operand equal to `decides`
    settles it even beside an unknown; otherwise an unknown leaves it unknown."""
    if a is decides or b is decides:
        return decides
    if a is None or b is None:
        return None
    return not decides


_and = partial(_kleene, False)
_or = partial(_kleene, True)


def _not(a: bool | None) -> bool | None:
    return None if a is None else not a


def _combine(
    op: Callable[[bool | None, bool | None], bool | None], lf: Evaluator, rf: Evaluator
) -> Evaluator:
    return lambda r: op(lf(r), rf(r))


def _strip_null(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        return None if any(a is None for a in args) else fn(*args)

    return wrapped


# name -> (argument types, result type, implementation)
_FUNCTIONS: dict[str, tuple[tuple[str, ...], str, Callable[..., Any]]] = {
    "contains": (("Edm.String", "Edm.String"), _BOOL, _strip_null(lambda s, t: t in s)),
    "startswith": (("Edm.String", "Edm.String"), _BOOL, _strip_null(lambda s, t: s.startswith(t))),
    "endswith": (("Edm.String", "Edm.String"), _BOOL, _strip_null(lambda s, t: s.endswith(t))),
    "tolower": (("Edm.String",), "Edm.String", _strip_null(str.lower)),
    "toupper": (("Edm.String",), "Edm.String", _strip_null(str.upper)),
    "trim": (("Edm.String",), "Edm.String", _strip_null(str.strip)),
    "length": (("Edm.String",), "Edm.Int32", _strip_null(len)),
    "indexof": (("Edm.String", "Edm.String"), "Edm.Int32", _strip_null(lambda s, t: s.find(t))),
    "concat": (("Edm.String", "Edm.String"), "Edm.String", _strip_null(lambda s, t: s + t)),
    "year": (("Edm.Date",), "Edm.Int32", _strip_null(lambda d: d.year)),
    "month": (("Edm.Date",), "Edm.Int32", _strip_null(lambda d: d.month)),
    "day": (("Edm.Date",), "Edm.Int32", _strip_null(lambda d: d.day)),
}


def _comparable(a: str, b: str) -> bool:
    if _NULL in (a, b) or a == b:
        return True
    return a in _NUMERIC and b in _NUMERIC


class _FilterParser:
    def __init__(self, text: str, entity: EntityType) -> None:
        self.text = text
        self.entity = entity
        self.tokens = _tokenize(text)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def _is_word(self, *words: str) -> bool:
        return self.tok.kind == "ident" and self.tok.text in words

    def _found(self) -> str:
        return "the end of the expression" if self.tok.kind == "eof" else f"'{self.tok.text}'"

    def error(self, what: str, tok: _Token | None = None) -> ODataError:
        return _syntax(self.text, (tok or self.tok).pos, what)

    def parse(self) -> Evaluator:
        if self.tok.kind == "eof":
            raise self.error("empty expression")
        node = self.or_expr()
        if self.tok.kind != "eof":
            raise self.error(f"expected 'and', 'or' or the end but found {self._found()}")
        if node.type != _BOOL:
            raise _bad_uri(
                f"Invalid $filter {self.text!r}: the expression is {node.type}, not a condition "
                f"(compare it with eq, ne, gt, ge, lt or le)"
            )
        return node.eval

    def _need_bool(self, node: _Node, op: str) -> None:
        if node.type != _BOOL:
            raise _syntax(
                self.text, node.pos, f"'{op}' needs a condition but '{node.text}' is {node.type}"
            )

    def or_expr(self) -> _Node:
        return self._logical_chain("or", _or, self.and_expr)

    def and_expr(self) -> _Node:
        return self._logical_chain("and", _and, self.not_expr)

    def _logical_chain(
        self,
        word: str,
        op: Callable[[bool | None, bool | None], bool | None],
        operand: Callable[[], _Node],
    ) -> _Node:
        """`operand (word operand)*`, left-associative; every operand must be a condition."""
        left = operand()
        while self._is_word(word):
            self.i += 1
            right = operand()
            self._need_bool(left, word)
            self._need_bool(right, word)
            left = _Node(_BOOL, _combine(op, left.eval, right.eval), left.pos, left.text)
        return left

    def not_expr(self) -> _Node:
        if self._is_word("not"):
            tok = self.tok
            self.i += 1
            inner = self.not_expr()
            self._need_bool(inner, "not")
            f = inner.eval
            return _Node(_BOOL, lambda r: _not(f(r)), tok.pos, "not")
        return self.comparison()

    def comparison(self) -> _Node:
        left = self.primary()
        if not self._is_word(*_COMPARISONS):
            ends = self.tok.kind in ("eof", "rparen", "comma") or self._is_word("and", "or")
            if left.type == _BOOL or ends:
                return left
            raise self.error(
                f"expected a comparison operator (eq, ne, gt, ge, lt, le) but found {self._found()}"
            )
        op_tok = self.tok
        op = op_tok.text
        self.i += 1
        right = self.primary()
        if not _comparable(left.type, right.type):
            raise self.error(
                f"cannot compare {left.type} '{left.text}' with {right.type} '{right.text}'"
                + (
                    " (dates are written unquoted: 2026-11-03)"
                    if "Edm.Date" in (left.type, right.type)
                    else ""
                ),
                op_tok,
            )
        if op not in ("eq", "ne") and _BOOL in (left.type, right.type):
            raise self.error(f"'{op}' cannot order booleans", op_tok)
        lf, rf = left.eval, right.eval
        return _Node(_BOOL, lambda r: _cmp(op, lf(r), rf(r)), left.pos, left.text)

    def primary(self) -> _Node:
        tok = self.tok
        if tok.kind == "lparen":
            self.i += 1
            node = self.or_expr()
            if self.tok.kind != "rparen":
                raise self.error(f"expected ')' but found {self._found()}")
            self.i += 1
            return node
        if tok.kind == "string":
            self.i += 1
            value = tok.text[1:-1].replace("''", "'")
            return _Node("Edm.String", lambda r: value, tok.pos, tok.text)
        if tok.kind == "enum":
            # Qualified enum literal IfsApp.Projection.Enum'Value': compared as its value.
            self.i += 1
            enum_value = tok.text[tok.text.index("'") + 1 : -1].replace("''", "'")
            return _Node("Edm.String", lambda r: enum_value, tok.pos, tok.text)
        if tok.kind == "date":
            self.i += 1
            try:
                day = date.fromisoformat(tok.text)
            except ValueError:
                raise self.error(f"'{tok.text}' is not a calendar date", tok) from None
            return _Node("Edm.Date", lambda r: day, tok.pos, tok.text)
        if tok.kind == "number":
            self.i += 1
            return self._number(tok)
        if tok.kind == "ident":
            return self._identifier(tok)
        raise self.error(f"expected a property, literal or '(' but found {self._found()}")

    def _number(self, tok: _Token) -> _Node:
        text = tok.text.rstrip("mMdD")
        if re.fullmatch(r"-?\d+", text):
            number: int | Decimal = int(text)
            kind = "Edm.Int32" if -(2**31) <= int(text) < 2**31 else "Edm.Decimal"
        else:
            try:
                number = Decimal(text)
            except InvalidOperation:
                raise self.error(f"'{tok.text}' is not a number", tok) from None
            kind = "Edm.Decimal"
        return _Node(kind, lambda r: number, tok.pos, tok.text)

    def _identifier(self, tok: _Token) -> _Node:
        word = tok.text
        if word == "null":
            self.i += 1
            return _Node(_NULL, lambda r: None, tok.pos, word)
        if word in ("true", "false"):
            self.i += 1
            flag = word == "true"
            return _Node(_BOOL, lambda r: flag, tok.pos, word)
        if word in _KEYWORDS:
            raise self.error(f"expected a property, literal or '(' but found '{word}'")
        if self.tokens[self.i + 1].kind == "lparen":
            return self._function(tok)
        self.i += 1
        prop = self.entity.prop(word)
        if prop is None:
            err = _unknown_property(self.entity, word, "$filter")
            err.message += f" (position {tok.pos})"
            raise err
        return _Node(prop.type, lambda r: r.get(word), tok.pos, word)

    def _function(self, tok: _Token) -> _Node:
        name = tok.text
        spec = _FUNCTIONS.get(name)
        if spec is None:
            raise self.error(
                f"unknown function '{name}' (supported: {', '.join(sorted(_FUNCTIONS))})", tok
            )
        arg_types, result, impl = spec
        self.i += 2  # name and '('
        args: list[_Node] = []
        while True:
            args.append(self.or_expr())
            if self.tok.kind == "comma":
                self.i += 1
                continue
            if self.tok.kind == "rparen":
                self.i += 1
                break
            raise self.error(f"expected ',' or ')' in {name}() but found {self._found()}")
        if len(args) != len(arg_types):
            raise self.error(f"{name}() takes {len(arg_types)} argument(s), got {len(args)}", tok)
        for arg, want in zip(args, arg_types, strict=True):
            if arg.type not in (want, _NULL):
                raise _syntax(
                    self.text, arg.pos, f"{name}() needs {want} but '{arg.text}' is {arg.type}"
                )
        evals = [a.eval for a in args]
        return _Node(result, lambda r: impl(*(e(r) for e in evals)), tok.pos, f"{name}(…)")


def parse_filter(text: str, entity: EntityType) -> Callable[[Mapping[str, Any]], bool]:
    """Compile a `$filter` for `entity`; the result keeps a row only where it is true."""
    evaluate = _FilterParser(text, entity).parse()
    return lambda row: evaluate(row) is True


# ---------------------------------------------------------------- query options
@dataclass
class QueryOptions:
    filter: Callable[[Mapping[str, Any]], bool] | None = None
    select: tuple[str, ...] | None = None
    orderby: tuple[tuple[str, bool], ...] = ()  # (property, descending)
    top: int | None = None
    skip: int = 0
    count: bool = False
    expand: tuple[str, ...] = ()


_SUPPORTED_OPTIONS = ("$filter", "$select", "$orderby", "$top", "$skip", "$count", "$expand")


def _non_negative(name: str, text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()):
        raise _bad_uri(f"Invalid {name} {text!r}: expected a non-negative integer")
    return int(text)


def parse_query_options(
    params: Iterable[tuple[str, str]],
    entity: EntityType,
    *,
    max_top: int | None = None,
    collection: bool = True,
) -> QueryOptions:
    """Read the system query options; unknown `$` options and bad values are refused."""
    opts = QueryOptions()
    seen: set[str] = set()
    for name, value in params:
        if not name.startswith("$"):
            continue  # custom query options are allowed and ignored
        if name in seen:
            raise _bad_uri(f"Query option {name} is given twice")
        seen.add(name)
        if name == "$format":
            if value.split(";")[0].strip().lower() not in ("json", "application/json"):
                raise _bad_uri(f"Unsupported $format {value!r}")
            continue
        if name not in _SUPPORTED_OPTIONS:
            raise ODataError(
                501,
                NOT_IMPLEMENTED,
                f"Query option {name} is not supported here "
                f"(supported: {', '.join(_SUPPORTED_OPTIONS)})",
            )
        if not collection and name not in ("$select", "$expand"):
            raise _bad_uri(f"Query option {name} applies to collections only")
        if name == "$filter":
            opts.filter = parse_filter(value, entity)
        elif name == "$select":
            opts.select = _parse_select(value, entity)
        elif name == "$orderby":
            opts.orderby = _parse_orderby(value, entity)
        elif name == "$top":
            opts.top = _non_negative("$top", value)
            if max_top is not None and opts.top > max_top:
                raise ODataError(
                    500,
                    QUERY_LIMIT_EXCEEDED,
                    f"The requested $top {opts.top} exceeds the maximum of {max_top} records "
                    f"per request",
                )
        elif name == "$skip":
            opts.skip = _non_negative("$skip", value)
        elif name == "$count":
            if value not in ("true", "false"):
                raise _bad_uri(f"Invalid $count {value!r}: expected true or false")
            opts.count = value == "true"
        elif name == "$expand":
            opts.expand = _parse_expand(value, entity)
    return opts


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",")]


def _parse_select(value: str, entity: EntityType) -> tuple[str, ...] | None:
    names = _split_list(value)
    if "*" in names:
        return None
    for name in names:
        if not name:
            raise _bad_uri(f"Invalid $select {value!r}: empty item")
        if entity.prop(name) is None and entity.navigation(name) is None:
            raise _unknown_property(entity, name, "$select")
    return tuple(dict.fromkeys(names))


def _parse_orderby(value: str, entity: EntityType) -> tuple[tuple[str, bool], ...]:
    keys: list[tuple[str, bool]] = []
    for item in _split_list(value):
        parts = item.split()
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
            raise _bad_uri(
                f"Invalid $orderby item {item!r}: expected 'Property', 'Property asc' "
                f"or 'Property desc'"
            )
        if entity.prop(parts[0]) is None:
            raise _unknown_property(entity, parts[0], "$orderby")
        keys.append((parts[0], len(parts) == 2 and parts[1] == "desc"))
    return tuple(keys)


def _parse_expand(value: str, entity: EntityType) -> tuple[str, ...]:
    names = _split_list(value)
    for name in names:
        if "(" in name:
            raise ODataError(
                501, NOT_IMPLEMENTED, f"Nested options in $expand ({name!r}) are not supported"
            )
        if entity.navigation(name) is None:
            raise ODataError(
                400,
                PROPERTY_NOTFOUND,
                f"Navigation property '{name}' in $expand does not exist on {entity.name}",
            )
    return tuple(dict.fromkeys(names))


def order_rows(
    rows: Sequence[Mapping[str, Any]], orderby: Sequence[tuple[str, bool]]
) -> list[Mapping[str, Any]]:
    """Stable multi-key sort; nulls last ascending and first descending, as Oracle does."""
    ordered = list(rows)
    for name, descending in reversed(orderby):
        present = [r for r in ordered if r.get(name) is not None]
        absent = [r for r in ordered if r.get(name) is None]
        present.sort(key=operator.itemgetter(name), reverse=descending)
        ordered = absent + present if descending else present + absent
    return ordered


@dataclass(frozen=True)
class Page:
    rows: list[Mapping[str, Any]]
    count: int  # matching rows before $skip/$top
    next_skip: int | None  # where the next page starts, None when this is the last
    next_top: int | None  # $top left for the next page (None: no $top was given)


def run_query(rows: Sequence[Mapping[str, Any]], opts: QueryOptions, page_size: int) -> Page:
    """Filter, order, then cut one server page out of [$skip, $skip+$top)."""
    matched = [r for r in rows if opts.filter(r)] if opts.filter else list(rows)
    if opts.orderby:
        matched = order_rows(matched, opts.orderby)
    end = len(matched) if opts.top is None else min(len(matched), opts.skip + opts.top)
    page_end = min(end, opts.skip + max(1, page_size))
    page = matched[opts.skip : page_end]
    if page_end < end:
        next_top = None if opts.top is None else opts.top - (page_end - opts.skip)
        return Page(page, len(matched), page_end, next_top)
    return Page(page, len(matched), None, None)


def select_fields(values: Mapping[str, Any], select: Sequence[str] | None) -> dict[str, Any]:
    names = values.keys() if select is None else [n for n in select if n in values]
    return {n: json_value(values[n]) for n in names}


# ---------------------------------------------------------------- key predicates
_KEY_PART_RE = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*('(?:[^']|'')*'|[^,']+?)\s*(?:,|$)")


def parse_key_predicate(text: str, entity: EntityType, set_name: str) -> dict[str, Any]:
    """`Company='10',VoucherType='X'` -> typed key values; every key property, nothing else."""
    values: dict[str, Any] = {}
    pos = 0
    if len(entity.key) == 1 and not re.match(r"\s*[A-Za-z_]\w*\s*=", text):
        raw_parts = [(entity.key[0], text.strip())]
    else:
        raw_parts = []
        while pos < len(text):
            m = _KEY_PART_RE.match(text, pos)
            if m is None:
                raise _bad_uri(f"Invalid key predicate {set_name}({text}) at position {pos + 1}")
            raw_parts.append((m.group(1), m.group(2)))
            pos = m.end()
    for name, literal in raw_parts:
        prop = entity.prop(name)
        if prop is None or name not in entity.key:
            raise _bad_uri(
                f"'{name}' is not a key of {set_name}; its key is ({', '.join(entity.key)})"
            )
        values[name] = _key_literal(prop, literal, set_name)
    missing = [k for k in entity.key if k not in values]
    if missing:
        raise _bad_uri(
            f"Key predicate {set_name}({text}) lacks {', '.join(missing)}; "
            f"the key is ({', '.join(entity.key)})"
        )
    return values


def _key_literal(prop: Property, literal: str, set_name: str) -> Any:
    bad = _bad_uri(f"Invalid value {literal} for key {prop.name} ({prop.type}) of {set_name}")
    if prop.type == "Edm.String":
        if len(literal) < 2 or literal[0] != "'" or literal[-1] != "'":
            raise bad
        return literal[1:-1].replace("''", "'")
    if prop.type == "Edm.Int32":
        if not re.fullmatch(r"-?\d+", literal):
            raise bad
        return int(literal)
    if prop.type == "Edm.Date":
        try:
            return date.fromisoformat(literal)
        except ValueError:
            raise bad from None
    try:
        return Decimal(literal)
    except InvalidOperation:
        raise bad from None


def format_key_predicate(values: Mapping[str, Any], entity: EntityType) -> str:
    return ",".join(f"{k}={format_literal(values[k])}" for k in entity.key)


# ---------------------------------------------------------------- $metadata
def edmx(namespace: str, entity_types: Sequence[EntityType], entity_sets: Mapping[str, str]) -> str:
    """EDMX 4.0 for one projection: entity types, keys, navigations and the container."""
    body: list[str] = []
    for et in entity_types:
        body.extend(entity_type_elements(et, namespace))
    body.extend(entity_container(namespace, entity_sets))
    return edmx_document(namespace, body)


def edmx_document(namespace: str, schema_body: Iterable[str]) -> str:
    """The EDMX 4.0 envelope around one schema's elements, one element a line."""
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
        "<edmx:DataServices>",
        f'<Schema Namespace={quoteattr(namespace)} xmlns="http://docs.oasis-open.org/odata/ns/edm">',
        *schema_body,
        "</Schema>",
        "</edmx:DataServices>",
        "</edmx:Edmx>",
    ]
    return "\n".join(out) + "\n"


def entity_type_elements(
    et: EntityType, namespace: str, omit: frozenset[str] = frozenset()
) -> list[str]:
    """One EntityType element: key, properties (with the facets a client reads: nullability,
    MaxLength, the Computed annotation) and contained navigations. `omit` leaves out the
    members it names as `Type.Member`."""
    out = [f"<EntityType Name={quoteattr(et.name)}>", "<Key>"]
    out.extend(f"<PropertyRef Name={quoteattr(k)}/>" for k in et.key)
    out.append("</Key>")
    for p in et.properties:
        if f"{et.name}.{p.name}" in omit:
            continue
        attrs = f"Name={quoteattr(p.name)} Type={quoteattr(p.type)}"
        if not p.nullable or p.name in et.key:
            attrs += ' Nullable="false"'
        if p.max_length is not None:
            attrs += f' MaxLength="{p.max_length}"'
        if p.type == "Edm.Decimal":
            attrs += ' Scale="variable"'
        if p.computed:
            out.append(
                f"<Property {attrs}>"
                '<Annotation Term="Org.OData.Core.V1.Computed" Bool="true"/></Property>'
            )
        else:
            out.append(f"<Property {attrs}/>")
    for n in et.navigations:
        if f"{et.name}.{n.name}" in omit:
            continue
        target = f"{namespace}.{n.target}"
        typ = f"Collection({target})" if n.collection else target
        out.append(
            f"<NavigationProperty Name={quoteattr(n.name)} Type={quoteattr(typ)} "
            'ContainsTarget="true"/>'
        )
    out.append("</EntityType>")
    return out


def entity_container(namespace: str, entity_sets: Mapping[str, str]) -> list[str]:
    """The EntityContainer: each entity set's name with its entity type's name."""
    out = ['<EntityContainer Name="Main">']
    for set_name, type_name in entity_sets.items():
        out.append(
            f"<EntitySet Name={quoteattr(set_name)} "
            f"EntityType={quoteattr(namespace + '.' + type_name)}/>"
        )
    out.append("</EntityContainer>")
    return out
