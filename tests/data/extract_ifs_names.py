"""Extract the names the console relies on from IFS Cloud 21R1's ACCRUL model files.

Run by hand against a checkout (or bare mirror) of the public repository that holds them
(`prashweenet/demoproj2`, folder `accrul/model/accrul/`):

    python tests/data/extract_ifs_names.py /path/to/repo > tests/data/ifs_21r1_names.json

The output lists, per projection the console uses: its entity sets and the entity each
serves, and per entity (or virtual or query) its attributes with IFS's data type, its keys,
its arrays (navigations), the references it declares itself (single-valued navigations, only
where the projection or fragment names them) and its bound actions. Only names are taken from the files; nothing
of their text is copied. `tests/ifs/test_names.py` checks every request path the client
sends against this list, and the simulator's `$metadata` is held to it too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Any

PROJECTIONS = (
    "VoucherEntryAssistantHandling",
    "VoucherHandling",
    "VoucherRowsAnalysis",
    "AccountsHandling",
    *(f"Code{c}Handling" for c in "BCDEFGHIJ"),
    "CodePartValuesHandling",
    "AccountingPeriodsHandling",
    "UserGroupPerPeriodHandling",
    "CurrencyRatesHandling",
    "CurrencyCodesHandling",
    "CompanyFinanceHandling",
)
ENUMERATIONS = (
    "AccountRequest",
    "AccountRequestText",
    "VoucherStatus",
    "AccYearPerStatus",
    "DefAmountMethod",
    "FinanceYesNo",
)
MODEL = "accrul/model/accrul/"
_XML_NS = re.compile(r"\{[^}]*\}")


def _show(repo: str, path: str) -> str | None:
    done = subprocess.run(
        ["git", "-C", repo, "show", f"HEAD:{path}"], capture_output=True, text=True
    )
    return done.stdout if done.returncode == 0 else None


def _xml(text: str) -> ET.Element:
    root = ET.fromstring(text.encode("utf-8"))
    for el in root.iter():
        el.tag = _XML_NS.sub("", el.tag)
    return root


def entity_attributes(repo: str, name: str) -> dict[str, Any] | None:
    text = _show(repo, f"{MODEL}{name}.entity")
    if text is None:
        return None
    root = _xml(text)
    attrs: dict[str, str] = {}
    keys: list[str] = []
    for a in root.iter("ATTRIBUTE"):
        n, t = a.findtext("NAME"), a.findtext("DATATYPE")
        if not n or not t:
            continue
        enum = a.findtext("ENUMERATION_NAME")
        attrs[n] = f"Enumeration({enum})" if enum else t.title()
        if a.findtext("IS_PRIMARY_KEY") == "1":
            keys.append(n)
    return {"keys": keys, "attributes": attrs, "based_on": root.findtext("BASED_ON") or ""}


def enumeration(repo: str, name: str) -> dict[str, str]:
    text = _show(repo, f"{MODEL}{name}.enumeration")
    if text is None:
        return {}
    root = _xml(text)
    values: dict[str, str] = {}
    for v in root.iter("VALUE"):
        ident, db = v.findtext("NAME"), v.findtext(".//DB_VALUE")
        if ident and db:
            values[ident] = db
    return values


_BLOCK = re.compile(
    r"^(?:@\w+\s+)*(entity|virtual|query|structure)\s+(\w+)(?:\s+using\s+(\w+))?\s*\{",
    re.MULTILINE,
)


def _blocks(text: str) -> list[tuple[str, str, str, str]]:
    """(kind, name, using, body) for each top-level entity/virtual/query block."""
    out = []
    for m in _BLOCK.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out.append((m.group(1), m.group(2), m.group(3) or "", text[m.end() : i - 1]))
    return out


def _strip_comments(text: str) -> str:
    return re.sub(r"--[^\n]*", "", text)


def projection(repo: str, name: str, fragments_seen: dict[str, str]) -> dict[str, Any] | None:
    text = _show(repo, f"{MODEL}{name}.projection")
    if text is None:
        return None
    text = _strip_comments(text)
    sources = [text]
    for frag in re.findall(r"^include fragment (\w+);", text, re.MULTILINE):
        if frag not in fragments_seen:
            fragments_seen[frag] = _strip_comments(_show(repo, f"{MODEL}{frag}.fragment") or "")
        sources.append(fragments_seen[frag])
    sets = {
        m.group(1): m.group(2)
        for src in sources[:1]
        for m in re.finditer(r"^entityset (\w+) for (\w+)", src, re.MULTILINE)
    }
    types: dict[str, Any] = {}
    for src in sources:
        for kind, tname, using, body in _blocks(src):
            if kind == "structure":
                continue
            t = types.setdefault(
                tname,
                {
                    "kind": kind,
                    "using": using,
                    "keys": [],
                    "attributes": {},
                    "arrays": {},
                    "actions": [],
                },
            )
            t["using"] = t["using"] or using
            keys = re.search(r"^\s*keys\s*=\s*([\w\s,]+);", body, re.MULTILINE)
            if keys:
                t["keys"] = [k.strip() for k in keys.group(1).split(",")]
            use = re.search(r"use attributes\s*=\s*([\w\s,]+);", body)
            if use:
                for a in use.group(1).split(","):
                    t["attributes"].setdefault(a.strip(), "")
            for am in re.finditer(r"^\s*attribute (\w+) (\w+)", body, re.MULTILINE):
                t["attributes"][am.group(1)] = am.group(2)
            for arr in re.finditer(r"^\s*array (\w+)\([^)]*\) to (\w+)", body, re.MULTILINE):
                t["arrays"][arr.group(1)] = arr.group(2)
            for ref in re.finditer(r"^\s*reference (\w+)\([^)]*\) to (\w+)\(", body, re.MULTILINE):
                t.setdefault("references", {})[ref.group(1)] = ref.group(2)
            for act in re.finditer(r"^\s*action (\w+)", body, re.MULTILINE):
                if act.group(1) not in t["actions"]:
                    t["actions"].append(act.group(1))
    served = set(sets.values())
    # Keep the types the entity sets serve and what their arrays reach.
    todo, keep = list(served), set()
    while todo:
        t = todo.pop()
        if t in keep or (t not in types and t not in served):
            continue
        keep.add(t)
        todo.extend(types.get(t, {}).get("arrays", {}).values())
    # And, one step, the entities the served types reference (a reference can be expanded).
    for t in sorted(served):
        for target in types.get(t, {}).get("references", {}).values():
            if target not in keep and entity_attributes(repo, target) is not None:
                keep.add(target)
    for t in sorted(keep):
        info = types.setdefault(
            t,
            {
                "kind": "entity",
                "using": "",
                "keys": [],
                "attributes": {},
                "arrays": {},
                "actions": [],
            },
        )
        base = entity_attributes(repo, info["using"] or t)
        if base is not None:
            info["attributes"] = {
                **base["attributes"],
                **{k: v or base["attributes"].get(k, "") for k, v in info["attributes"].items()},
            }
            info["keys"] = info["keys"] or base["keys"]
        if info["kind"] == "virtual":
            info["keys"] = ["Objkey"]
            info["attributes"] = {"Objkey": "Text", "ParentObjkey": "Text", **info["attributes"]}
    return {
        "entity_sets": sets,
        "types": {t: types[t] for t in sorted(keep)},
        "actions": sorted({m.group(1) for m in re.finditer(r"^action (\w+)", text, re.MULTILINE)}),
    }


def main(repo: str) -> None:
    fragments: dict[str, str] = {}
    out: dict[str, Any] = {
        "source": "IFS Cloud 21R1 ACCRUL model files (public repository prashweenet/demoproj2,"
        " accrul/model/accrul/); names only",
        "projections": {},
        "enumerations": {e: enumeration(repo, e) for e in ENUMERATIONS},
    }
    for p in PROJECTIONS:
        found = projection(repo, p, fragments)
        if found is not None:
            out["projections"][p] = found
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
