"""The comparison behind `ml-console ifs check`, on EDMX shaped as IFS serves it.

The end-to-end check against the simulator (renamed and missing projections, a 403) is in
tests/e2e/test_ifs_check.py; this file pins the parsing and the wording of each finding."""

from __future__ import annotations

import pytest

from console.ifs.preflight import (
    ENUM,
    EntityNeed,
    MetadataError,
    ProjectionNeed,
    check,
    compare,
    parse_metadata,
)

NS = "IfsApp.VoucherEntryAssistantHandling"

EDMX = f"""<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
<edmx:DataServices>
<Schema Namespace="{NS}" xmlns="http://docs.oasis-open.org/odata/ns/edm">
<EnumType Name="VoucherStatus"><Member Name="Confirmed" Value="0"/></EnumType>
<EntityType Name="VoucherEntry">
  <Key><PropertyRef Name="Objkey"/></Key>
  <Property Name="Objkey" Type="Edm.String" Nullable="false"/>
  <Property Name="Company" Type="Edm.String"/>
  <Property Name="VoucherDate" Type="Edm.Date"/>
  <Property Name="VoucherStatus" Type="{NS}.VoucherStatus"/>
  <NavigationProperty Name="VoucherPostingArray" Type="Collection({NS}.VoucherPosting)"/>
</EntityType>
<EntityType Name="VoucherPosting">
  <Key><PropertyRef Name="Objkey"/></Key>
  <Property Name="Objkey" Type="Edm.String" Nullable="false"/>
  <Property Name="Account" Type="Edm.String"/>
  <Property Name="DebetAmount" Type="Edm.Double"/>
  <Property Name="ReferenceNumber" Type="Edm.String"/>
</EntityType>
<Action Name="VoucherEntry_CreateVoucher" IsBound="true">
  <Parameter Name="it" Type="{NS}.VoucherEntry"/>
  <ReturnType Type="Edm.Double"/>
</Action>
<EntityContainer Name="Main">
  <EntitySet Name="VoucherSet" EntityType="{NS}.VoucherEntry"/>
</EntityContainer>
</Schema>
</edmx:DataServices>
</edmx:Edmx>
"""

NEED = ProjectionNeed(
    projection="VoucherEntryAssistantHandling",
    config_key="ifs.projections.voucher_entry",
    entity_sets=(
        EntityNeed(
            "VoucherSet",
            {"Company": "text", "VoucherDate": "date", "VoucherStatus": ENUM},
            navigations=("VoucherPostingArray",),
            actions=("VoucherEntry_CreateVoucher",),
        ),
        EntityNeed(
            "VoucherSet/VoucherPostingArray",
            {"Account": "text", "DebetAmount": "number", "ReferenceNumber": "text"},
        ),
    ),
)


def test_a_tenant_that_serves_everything_has_no_findings() -> None:
    meta = parse_metadata(EDMX)
    assert meta.entity_sets == {"VoucherSet": "VoucherEntry"}
    assert meta.bound_actions["VoucherEntry_CreateVoucher"] == {"VoucherEntry"}
    assert compare(NEED, meta) == []


def test_each_difference_is_named_with_the_key_to_set() -> None:
    drifted = (
        EDMX.replace('Name="DebetAmount" Type="Edm.Double"', 'Name="DebetAmount" Type="Edm.String"')
        .replace('<Property Name="ReferenceNumber" Type="Edm.String"/>', "")
        .replace("VoucherEntry_CreateVoucher", "VoucherEntry_MakeVoucher")
    )
    findings = compare(NEED, parse_metadata(drifted))
    kinds = {(f.kind, f.item) for f in findings}
    assert kinds == {
        ("wrong-type", "VoucherPosting.DebetAmount"),
        ("missing-attribute", "VoucherPosting.ReferenceNumber"),
        ("missing-action", f"{NS}.VoucherEntry_CreateVoucher"),
    }
    wrong = next(f for f in findings if f.kind == "wrong-type")
    assert wrong.found == "Edm.String"
    assert "Edm.Double" in wrong.expected
    assert all(f.config_key == "ifs.projections.voucher_entry" for f in findings)
    assert (
        "VoucherEntry_MakeVoucher" in next(f for f in findings if f.kind == "missing-action").found
    )


def test_a_renamed_entity_set_lists_what_the_tenant_serves() -> None:
    renamed = EDMX.replace('EntitySet Name="VoucherSet"', 'EntitySet Name="VoucherEntrySet"')
    findings = compare(NEED, parse_metadata(renamed))
    # Said once, though both the set and the path through it need it.
    assert [(f.kind, f.item) for f in findings] == [("missing-entity-set", "VoucherSet")]
    assert "VoucherEntrySet" in findings[0].found


def test_a_missing_navigation_is_reported_once_per_path() -> None:
    no_nav = EDMX.replace(
        f'<NavigationProperty Name="VoucherPostingArray" Type="Collection({NS}.VoucherPosting)"/>',
        "",
    )
    findings = compare(NEED, parse_metadata(no_nav))
    assert {(f.kind, f.item) for f in findings} == {
        ("missing-navigation", "VoucherEntry/VoucherPostingArray")
    }


def test_an_enum_served_as_text_is_a_wrong_type() -> None:
    as_text = EDMX.replace(f'Type="{NS}.VoucherStatus"', 'Type="Edm.String"')
    findings = compare(NEED, parse_metadata(as_text))
    assert [(f.kind, f.item, f.expected) for f in findings] == [
        ("wrong-type", "VoucherEntry.VoucherStatus", "an enumeration")
    ]


@pytest.mark.parametrize(
    ("status", "kind"),
    [(403, "forbidden"), (401, "forbidden"), (404, "missing-projection"), (503, "unreachable")],
)
def test_the_service_document_answer_decides_before_metadata(status: int, kind: str) -> None:
    asked: list[str] = []

    def fetch(path: str) -> tuple[int, str]:
        asked.append(path)
        return status, ""

    report = check([NEED], fetch)
    assert not report.ok
    assert [f.kind for f in report.findings] == [kind]
    assert asked == ["VoucherEntryAssistantHandling.svc/"]  # no $metadata after a refusal
    assert "VoucherEntryAssistantHandling" in report.findings[0].sentence()


def test_a_healthy_projection_reads_two_documents_and_reports_json() -> None:
    docs = {"VoucherEntryAssistantHandling.svc/": (200, "{}")}
    docs["VoucherEntryAssistantHandling.svc/$metadata"] = (200, EDMX)
    report = check([NEED], lambda path: docs[path])
    assert report.ok
    body = report.to_json()
    assert body["ok"] is True
    assert body["projections"] == [
        {
            "projection": "VoucherEntryAssistantHandling",
            "config_key": "ifs.projections.voucher_entry",
            "assumed": False,
            "why": "",
            "ok": True,
            "findings": [],
        }
    ]


@pytest.mark.parametrize(
    "text", ["not xml at all", "<html><body>Login</body></html>", "<edmx:Edmx xmlns:edmx='x'/>"]
)
def test_what_is_not_edmx_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(MetadataError):
        parse_metadata(text)
    report = check([NEED], lambda path: (200, text))
    assert [f.kind for f in report.findings] == ["bad-metadata"]
