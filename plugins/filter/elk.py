# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the elk role: the Elasticsearch heap from the host's memory, and Elastic's .sha512 files."""

from __future__ import annotations

import json
import re

from ansible.errors import AnsibleFilterError

# Above about 31 GiB the JVM can no longer use compressed object pointers (Elastic's own advice).
COMPRESSED_OOPS_LIMIT_MB = 31744
_SHA512 = re.compile(r"^[0-9a-f]{128}$")


def elk_heap_mb(memory_mb, share=0.5, limit_mb=COMPRESSED_OOPS_LIMIT_MB, step_mb=64):
    """The heap (MiB) for a host with memory_mb: share of it, rounded down to step_mb, at most limit_mb."""
    try:
        memory = int(memory_mb)
        fraction = float(share)
        limit = int(limit_mb)
        step = int(step_mb)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"elk_heap_mb: memory, share, limit and step must be numbers ({exc})") from exc
    if memory <= 0 or not 0 < fraction <= 1 or limit <= 0 or step <= 0:
        raise AnsibleFilterError(
            f"elk_heap_mb: memory ({memory}), limit ({limit}) and step ({step}) must be positive and the share "
            f"({fraction}) above 0 and at most 1")
    heap = int(memory * fraction) // step * step
    return min(heap, limit // step * step)


def elk_sha512_from_file(content, filename=None):
    """The hex digest from the text of a .sha512 file (`<digest>  <name>` or the digest alone).

    With filename, the name in the file (when there is one) must be that file's base name.
    """
    fields = str(content).split()
    if not fields or not _SHA512.match(fields[0].lower()):
        raise AnsibleFilterError(
            "elk_sha512_from_file: the checksum file does not start with a SHA-512 digest (128 hex digits)")
    if filename is not None and len(fields) > 1:
        named = fields[1].lstrip("*").rsplit("/", 1)[-1]
        wanted = str(filename).rsplit("/", 1)[-1]
        if named != wanted:
            raise AnsibleFilterError(
                f"elk_sha512_from_file: the checksum file is for {named}, not for {wanted}")
    return fields[0].lower()


def _search_source(query, index_ref=True):
    source = {"query": {"query": query, "language": "kuery"}, "filter": []}
    if index_ref:
        source["indexRefName"] = "kibanaSavedObjectMeta.searchSourceJSON.index"
    return json.dumps(source, sort_keys=True)


def elk_saved_objects(searches, data_views, dashboard_id, title, description=""):
    """Kibana saved objects (data views, saved searches, one dashboard with a panel per search).

    searches: [{id, title, index (a data view id), query (KQL), columns}]; data_views: [{id, title, name}].
    Returns the objects in the order Kibana's import needs (what is referenced comes first).
    """
    view_ids = {view["id"] for view in data_views}
    objects = [
        {"type": "index-pattern", "id": view["id"], "references": [],
         "attributes": {"title": view["title"], "name": view.get("name", view["title"]), "timeFieldName": "@timestamp"}}
        for view in data_views
    ]
    panels, references = [], []
    for number, search in enumerate(searches, start=1):
        if search["index"] not in view_ids:
            raise AnsibleFilterError(
                f"elk_saved_objects: search {search['id']} uses data view {search['index']}, which is not defined")
        objects.append({
            "type": "search", "id": search["id"],
            "attributes": {
                "title": search["title"], "description": "", "columns": list(search.get("columns", [])),
                "sort": [["@timestamp", "desc"]],
                "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(search["query"])},
            },
            "references": [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern",
                            "id": search["index"]}],
        })
        index = str(number)
        panels.append({
            "type": "search", "panelIndex": index, "panelRefName": f"panel_{index}", "embeddableConfig": {},
            "gridData": {"x": 24 * ((number - 1) % 2), "y": 15 * ((number - 1) // 2), "w": 24, "h": 15, "i": index},
        })
        references.append({"name": f"panel_{index}", "type": "search", "id": search["id"]})
    objects.append({
        "type": "dashboard", "id": dashboard_id,
        "attributes": {
            "title": title, "description": description,
            "panelsJSON": json.dumps(panels, sort_keys=True),
            "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}, sort_keys=True),
            "timeRestore": True, "timeFrom": "now-24h", "timeTo": "now",
            "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source("", index_ref=False)},
        },
        "references": references,
    })
    return objects


class FilterModule:
    """elk_heap_mb, elk_sha512_from_file, elk_saved_objects."""

    def filters(self):
        return {
            "elk_heap_mb": elk_heap_mb,
            "elk_sha512_from_file": elk_sha512_from_file,
            "elk_saved_objects": elk_saved_objects,
        }
