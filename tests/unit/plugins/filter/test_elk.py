"""The elk role's filters: heap sizing and Elastic's .sha512 files."""

from __future__ import annotations

import hashlib
import json

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.streamcloud.platform.plugins.filter.elk import (
    FilterModule,
    elk_heap_mb,
    elk_saved_objects,
    elk_sha512_from_file,
)


@pytest.mark.parametrize(("memory", "share", "expected"), [
    (3840, 0.5, 1920),     # a 4 GiB t3.medium as the kernel reports it
    (957, 0.5, 448),       # a 1 GiB t2.micro: too small, the role refuses it before using this
    (16000, 0.5, 8000 // 64 * 64),
    (4096, 0.25, 1024),
    (131072, 0.5, 31744),  # capped below the compressed-oops limit
])
def test_heap_is_a_share_rounded_down_and_capped(memory, share, expected):
    assert elk_heap_mb(memory, share) == expected


def test_heap_accepts_strings_as_jinja_passes_them():
    assert elk_heap_mb("8192", "0.5") == 4096


@pytest.mark.parametrize(("memory", "share"), [(0, 0.5), (-1, 0.5), (4096, 0), (4096, 1.5), ("lots", 0.5)])
def test_heap_refuses_nonsense(memory, share):
    with pytest.raises(AnsibleFilterError, match="elk_heap_mb"):
        elk_heap_mb(memory, share)


def test_sha512_from_elastic_format():
    digest = hashlib.sha512(b"package").hexdigest()
    assert elk_sha512_from_file(f"{digest}  auditbeat-8.17.0-amd64.deb\n", "auditbeat-8.17.0-amd64.deb") == digest


def test_sha512_bare_digest_and_upper_case():
    digest = hashlib.sha512(b"package").hexdigest()
    assert elk_sha512_from_file(digest.upper() + "\n") == digest


def test_sha512_binary_marker_and_path_in_name():
    digest = hashlib.sha512(b"package").hexdigest()
    assert elk_sha512_from_file(f"{digest} *dl/kibana-8.17.0-amd64.deb", "/srv/debs/kibana-8.17.0-amd64.deb") == digest


def test_sha512_for_another_file_is_refused():
    digest = hashlib.sha512(b"package").hexdigest()
    with pytest.raises(AnsibleFilterError, match=r"is for kibana-8\.17\.0-amd64\.deb, not for auditbeat"):
        elk_sha512_from_file(f"{digest}  kibana-8.17.0-amd64.deb", "auditbeat-8.17.0-amd64.deb")


@pytest.mark.parametrize("content", ["", "not-a-digest  file.deb", hashlib.sha256(b"x").hexdigest()])
def test_sha512_garbage_is_refused(content):
    with pytest.raises(AnsibleFilterError, match="SHA-512 digest"):
        elk_sha512_from_file(content)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"elk_heap_mb", "elk_sha512_from_file", "elk_saved_objects"}


SEARCHES = [
    {"id": "s-backup", "title": "Backup runs", "index": "v-logs", "query": 'streamcloud.service : "backup"',
     "columns": ["backup.status"]},
    {"id": "s-logins", "title": "Logins", "index": "v-audit", "query": 'event.dataset : "login"'},
    {"id": "s-http", "title": "HTTP", "index": "v-logs", "query": 'streamcloud.service : "nginx"'},
]
VIEWS = [{"id": "v-logs", "title": "filebeat-*"}, {"id": "v-audit", "title": "auditbeat-*", "name": "Audit"}]


def test_saved_objects_reference_only_what_comes_before_them():
    objects = elk_saved_objects(SEARCHES, VIEWS, "dash", "Platform")
    seen = set()
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in seen
        seen.add((obj["type"], obj["id"]))
    assert [o["type"] for o in objects] == ["index-pattern"] * 2 + ["search"] * 3 + ["dashboard"]


def test_dashboard_has_one_panel_per_search_on_a_two_column_grid():
    dashboard = elk_saved_objects(SEARCHES, VIEWS, "dash", "Platform")[-1]
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    refs = {r["name"]: r["id"] for r in dashboard["references"]}
    assert [refs[p["panelRefName"]] for p in panels] == ["s-backup", "s-logins", "s-http"]
    assert [(p["gridData"]["x"], p["gridData"]["y"]) for p in panels] == [(0, 0), (24, 0), (0, 15)]


def test_search_source_is_json_text_with_the_query():
    search = elk_saved_objects(SEARCHES, VIEWS, "dash", "Platform")[2]
    source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert source["query"] == {"query": 'streamcloud.service : "backup"', "language": "kuery"}
    assert source["indexRefName"] == search["references"][0]["name"]


def test_search_on_an_undefined_data_view_is_refused():
    with pytest.raises(AnsibleFilterError, match="data view v-none"):
        elk_saved_objects([{**SEARCHES[0], "index": "v-none"}], VIEWS, "dash", "Platform")
