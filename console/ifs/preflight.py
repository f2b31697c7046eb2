"""`ml-console ifs check`: prove that a tenant serves what the console will use, before it posts.

A tenant on another release may rename a projection, drop an attribute or change a type; the
first sign of that must not be a failed voucher at period close. For each projection the
console uses this reads the service document (is the projection there, may this client read
it) and `$metadata` (EDMX), and compares them with what the client sends: entity sets,
attributes with their types, navigations and bound actions. Every difference becomes one
Finding that says what differs and which config key points elsewhere.

Pure by design: the HTTP side is a `fetch(path) -> (status, body)` callable the command layer
wires to the IFS client, so the comparison is tested without a network and the client keeps
its one request path (token, rate limit, retries).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field

from console.errors import ConfigError

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
EDMX = "{http://docs.oasis-open.org/odata/ns/edmx}"

# What an expected attribute type may be served as. IFS's `Number` is Edm.Double in its
# projections (Edm.Decimal on some releases); either carries an amount when parsed as Decimal.
TYPE_FAMILIES: Mapping[str, frozenset[str]] = {
    "number": frozenset({"Edm.Double", "Edm.Decimal", "Edm.Int32", "Edm.Int64"}),
    "text": frozenset({"Edm.String"}),
    "date": frozenset({"Edm.Date", "Edm.DateTimeOffset"}),
    "timestamp": frozenset({"Edm.DateTimeOffset"}),
    "boolean": frozenset({"Edm.Boolean"}),
}
ENUM = "enum"  # any EnumType of the projection's schema (IFS enumerations, e.g. VoucherStatus)
# An IFS enumeration the console reads and writes as its identifier ("Mandatory", "Open"):
# OData's JSON carries an enum value as that string, so either an EnumType or Edm.String
# serves it (real tenants declare EnumTypes; the simulator serves strings).
ENUM_OR_TEXT = "enum-or-text"

Fetch = Callable[[str], tuple[int, str]]


@dataclass(frozen=True)
class EntityNeed:
    """One entity set (or a navigation reached from one) and what the console uses of it."""

    entity_set: str
    attributes: Mapping[str, str] = field(default_factory=dict)  # name -> family or ENUM
    navigations: tuple[str, ...] = ()
    # bound action names as $metadata spells them, e.g. VoucherEntry_CreateVoucher
    actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectionNeed:
    projection: str
    config_key: str  # the key that names this projection (and its sets) in config.toml
    entity_sets: tuple[EntityNeed, ...]
    assumed: bool = False  # not in IFS's published model: a tenant must confirm it
    why: str = ""  # what the console uses it for, for the report
    # The schema namespace the console's bound-action URLs spell (IfsApp.<Projection>);
    # empty: not checked.
    namespace: str = ""


@dataclass(frozen=True)
class Finding:
    projection: str
    kind: str  # missing-projection | forbidden | unreachable | bad-metadata | missing-entity-set
    #            | missing-attribute | wrong-type | missing-navigation | missing-action
    #            | wrong-namespace
    item: str
    expected: str
    found: str
    config_key: str
    advice: str

    def sentence(self) -> str:
        found = f" (found {self.found})" if self.found else ""
        return (
            f"{self.projection}: {self.kind} {self.item}: "
            f"expected {self.expected}{found}. {self.advice}"
        )


@dataclass(frozen=True)
class ProjectionResult:
    projection: str
    config_key: str
    assumed: bool
    why: str
    ok: bool
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class CheckReport:
    results: tuple[ProjectionResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "projections": [
                {
                    "projection": r.projection,
                    "config_key": r.config_key,
                    "assumed": r.assumed,
                    "why": r.why,
                    "ok": r.ok,
                    "findings": [asdict(f) for f in r.findings],
                }
                for r in self.results
            ],
        }


# ------------------------------------------------------------------------ $metadata
@dataclass(frozen=True)
class EntityTypeInfo:
    name: str
    properties: Mapping[str, str]  # name -> Edm type (or the qualified enum type)
    navigations: Mapping[str, str]  # name -> target type name (unqualified)


@dataclass(frozen=True)
class Metadata:
    namespace: str
    entity_types: Mapping[str, EntityTypeInfo]
    entity_sets: Mapping[str, str]  # set -> entity type name (unqualified)
    enum_types: frozenset[str]  # qualified names
    bound_actions: Mapping[str, frozenset[str]]  # action name -> entity types it binds to


class MetadataError(ValueError):
    """The document is not EDMX this check can read."""


def _local(qualified: str) -> str:
    inner = qualified[len("Collection(") : -1] if qualified.startswith("Collection(") else qualified
    return inner.rsplit(".", 1)[-1]


def parse_metadata(text: str) -> Metadata:
    try:
        root = ET.fromstring(text)  # noqa: S314 — expat refuses entity expansion bombs
    except ET.ParseError as exc:
        raise MetadataError(f"not XML: {exc}") from None
    if root.tag != f"{EDMX}Edmx":
        raise MetadataError(f"not an EDMX document (root element {root.tag!r})")
    schemas = root.findall(f"{EDMX}DataServices/{EDM}Schema")
    if not schemas:
        raise MetadataError("no Schema in the EDMX document")
    namespace = schemas[0].get("Namespace", "")
    types: dict[str, EntityTypeInfo] = {}
    sets: dict[str, str] = {}
    enums: set[str] = set()
    actions: dict[str, set[str]] = {}
    for schema in schemas:
        ns = schema.get("Namespace", "")
        for et in schema.findall(f"{EDM}EntityType"):
            name = et.get("Name", "")
            props = {p.get("Name", ""): p.get("Type", "") for p in et.findall(f"{EDM}Property")}
            navs = {
                n.get("Name", ""): _local(n.get("Type", ""))
                for n in et.findall(f"{EDM}NavigationProperty")
            }
            types[name] = EntityTypeInfo(name, props, navs)
        for en in schema.findall(f"{EDM}EnumType"):
            enums.add(f"{ns}.{en.get('Name', '')}")
        for act in schema.findall(f"{EDM}Action"):
            if act.get("IsBound") != "true":
                continue
            params = act.findall(f"{EDM}Parameter")
            binding = _local(params[0].get("Type", "")) if params else ""
            actions.setdefault(act.get("Name", ""), set()).add(binding)
        for container in schema.findall(f"{EDM}EntityContainer"):
            for es in container.findall(f"{EDM}EntitySet"):
                sets[es.get("Name", "")] = _local(es.get("EntityType", ""))
    return Metadata(
        namespace=namespace,
        entity_types=types,
        entity_sets=sets,
        enum_types=frozenset(enums),
        bound_actions={k: frozenset(v) for k, v in actions.items()},
    )


def _type_ok(expected: str, served: str, meta: Metadata) -> bool:
    if expected == ENUM:
        return served in meta.enum_types
    if expected == ENUM_OR_TEXT:
        return served in meta.enum_types or served == "Edm.String"
    family = TYPE_FAMILIES.get(expected)
    return served in family if family is not None else served == expected


def _expected_text(expected: str) -> str:
    if expected == ENUM:
        return "an enumeration"
    if expected == ENUM_OR_TEXT:
        return "an enumeration or Edm.String"
    family = TYPE_FAMILIES.get(expected)
    return " or ".join(sorted(family)) if family else expected


# ------------------------------------------------------------------------ comparison
def compare(need: ProjectionNeed, meta: Metadata) -> list[Finding]:
    """Every way `meta` fails to serve `need` (empty: it serves all of it)."""
    out: list[Finding] = []

    def finding(kind: str, item: str, expected: str, found: str = "", advice: str = "") -> None:
        out.append(
            Finding(
                need.projection,
                kind,
                item,
                expected,
                found,
                need.config_key,
                advice or f"Check the tenant's API Explorer and set {need.config_key}.",
            )
        )

    if need.namespace and meta.namespace != need.namespace:
        finding(
            "wrong-namespace",
            "Schema",
            f"namespace {need.namespace} (the console's bound-action URLs name it)",
            meta.namespace or "none",
        )
    for es in need.entity_sets:
        path = es.entity_set.split("/")
        type_name = meta.entity_sets.get(path[0])
        if type_name is None:
            near = ", ".join(sorted(meta.entity_sets)) or "none"
            finding("missing-entity-set", path[0], "an entity set", f"sets: {near}")
            continue
        # A path such as VoucherSet/VoucherPostingArray names the navigation's target type.
        broken = False
        for nav in path[1:]:
            info = meta.entity_types.get(type_name)
            if info is None or nav not in info.navigations:
                finding("missing-navigation", f"{type_name}/{nav}", "a navigation property")
                broken = True
                break
            type_name = info.navigations[nav]
        if broken:
            continue
        info = meta.entity_types.get(type_name)
        if info is None:
            finding("bad-metadata", es.entity_set, f"entity type {type_name}", "not declared")
            continue
        for attr, expected in es.attributes.items():
            served = info.properties.get(attr)
            if served is None:
                finding("missing-attribute", f"{type_name}.{attr}", _expected_text(expected))
            elif not _type_ok(expected, served, meta):
                finding("wrong-type", f"{type_name}.{attr}", _expected_text(expected), served)
        for nav in es.navigations:
            if nav not in info.navigations:
                finding("missing-navigation", f"{type_name}/{nav}", "a navigation property")
        for action in es.actions:
            bound = meta.bound_actions.get(action)
            if bound is None or type_name not in bound:
                finding(
                    "missing-action",
                    f"{meta.namespace}.{action}",
                    f"a bound action on {type_name}",
                    ", ".join(sorted(meta.bound_actions)) if bound is None else "bound elsewhere",
                )
    # One sentence per difference: a set or navigation missing under two needs (a set and
    # a path through it) is said once.
    return list(dict.fromkeys(out))


def check(
    needs: Iterable[ProjectionNeed], fetch: Fetch, *, service_documents: bool = True
) -> CheckReport:
    """Read each projection's service document and $metadata through `fetch` and compare.

    A document is asked for once per check, however many needs share its projection (two
    entity sets of one projection, each under its own config key). Without
    `service_documents` only `$metadata` is read, one request per projection (the check
    before posting): its status then decides forbidden and missing as the service
    document's would."""
    answers: dict[str, tuple[int, str]] = {}

    def once(path: str) -> tuple[int, str]:
        if path not in answers:
            answers[path] = fetch(path)
        return answers[path]

    results: list[ProjectionResult] = []
    for need in needs:
        findings = _check_one(need, once, service_documents)
        results.append(
            ProjectionResult(
                need.projection,
                need.config_key,
                need.assumed,
                need.why,
                not findings,
                tuple(findings),
            )
        )
    return CheckReport(tuple(results))


def _check_one(need: ProjectionNeed, fetch: Fetch, service_documents: bool) -> list[Finding]:
    base = f"{need.projection}.svc/"

    def one(kind: str, expected: str, found: str, advice: str) -> list[Finding]:
        return [Finding(need.projection, kind, base, expected, found, need.config_key, advice)]

    def refused(status: int) -> list[Finding] | None:
        if status in (401, 403):
            return one(
                "forbidden",
                "read access",
                f"HTTP {status}",
                "Grant the IAM client's service user a permission set that includes this "
                "projection.",
            )
        if status == 404:
            return one(
                "missing-projection",
                "the projection's service document",
                "HTTP 404",
                "This release may name it differently: find it in the API Explorer and set "
                f"{need.config_key}.",
            )
        return None

    if service_documents:
        status, _ = fetch(base)
        early = refused(status)
        if early is not None:
            return early
        if status >= 400:
            advice = "Try again; if it persists, ask the IFS administrator."
            return one("unreachable", "HTTP 200", f"HTTP {status}", advice)
    status, body = fetch(base + "$metadata")
    if not service_documents:
        early = refused(status)
        if early is not None:
            return early
    if status >= 400:
        advice = (
            "The service document answered but $metadata did not."
            if service_documents
            else "Try again; if it persists, ask the IFS administrator."
        )
        return one("unreachable", "$metadata", f"HTTP {status}", advice)
    try:
        meta = parse_metadata(body)
    except MetadataError as exc:
        return one("bad-metadata", "EDMX 4.0", str(exc), "Is the URL a projection of IFS Cloud?")
    return compare(need, meta)


class TenantDrift(ConfigError):
    """The tenant does not serve what the console uses (a check found differences): a
    configuration matter (exit 2), settled by setting the config keys the findings name or
    by the IFS administrator (a grant)."""

    def __init__(self, report: CheckReport, *, outcome: str = "") -> None:
        self.report = report
        findings = report.findings
        first = findings[0].sentence() if findings else "no findings"
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        lead = f"{outcome}: " if outcome else ""
        super().__init__(
            f"ifs: {lead}the tenant does not serve what the console uses: {first}{more} "
            "Run `ml-console ifs check` for every difference."
        )
