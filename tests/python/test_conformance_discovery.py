"""Kubernetes v1.33 conformance entries on discovery, the OpenAPI documents of CustomResourceDefinitions, custom
resource defaulting and the garbage collector's cycles of owners, reproduced with the official Python client and kubectl.

Each test repeats the requests and checks of one upstream e2e test (its file under kubernetes/kubernetes
`test/e2e/apimachinery/` is named in the docstring). Where upstream uses a client-go helper (the aggregated discovery
client, the OpenAPI v3 root), the helper's requests and its reading of the answers are done here by hand. Where
upstream runs kubectl, these tests run the real kubectl (/usr/bin/kubectl) against the server `KUBECONFIG` names,
with a discovery cache of their own so that no cached document from another test can hide what the server serves.

Upstream's OpenAPI checks poll /openapi/v2; these tests also check /openapi/v3 (which kubectl explain reads), the
way client-go's `openapi3` root reads it. Upstream re-reads each document ten times in a row to get past lagging
replicas of an HA control plane; against the one server here a single matching read is enough.

Cluster-scoped objects (the CustomResourceDefinitions) get random names and are deleted at the end of their test.
"""

import copy
import json
import re
import subprocess
import tempfile

import pytest
from kubernetes.client import ApiException

from test_conformance import (
    CRDS,
    JSON_PATCH,
    call,
    create_crd,
    delete_crd,
    random_name_crd,
    random_suffix,
    wait_until,
)

KUBECTL = "/usr/bin/kubectl"
# Upstream polls the OpenAPI documents for up to a minute; publication in kaasd takes well under a second.
OPENAPI_TIMEOUT = 30.0


# ---------------------------------------------------------------------------------------------------------------------
# Requests whose answer is needed as it came (headers, raw body)
# ---------------------------------------------------------------------------------------------------------------------


def raw_get(api_client, path, accept, extra_headers=None):
    """GET `path` with the given Accept header; the urllib3 response (status, headers, undecoded body).

    Statuses outside 2xx raise ApiException, as with every call of the generated client.
    """
    headers = {"Accept": accept, **(extra_headers or {})}
    return api_client.call_api(
        path,
        "GET",
        header_params=headers,
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )


def media_type(content_type):
    """A Content-Type split as mime.ParseMediaType does: the type, and its parameters with lowercase names."""
    parts = [part.strip() for part in (content_type or "").split(";")]
    parameters = {}
    for part in parts[1:]:
        name, _, value = part.partition("=")
        parameters[name.strip().lower()] = value.strip().strip('"')
    return parts[0].lower(), parameters


# ---------------------------------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------------------------------

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
# What client-go's discovery client asks for: the aggregated document first, the plain one as the fallback.
DISCOVERY_ACCEPT = f"{AGGREGATED_V2},{AGGREGATED_V2BETA1},application/json"

# The resources both aggregated_discovery.go and discovery.go expect every conformant server to serve.
EXPECTED_LEGACY_GVRS = [("", "v1", "namespaces")]
EXPECTED_GVRS = [
    ("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations"),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
    ("apiregistration.k8s.io", "v1", "apiservices"),
    ("apps", "v1", "deployments"),
    ("authentication.k8s.io", "v1", "tokenreviews"),
    ("authorization.k8s.io", "v1", "selfsubjectaccessreviews"),
    ("autoscaling", "v1", "horizontalpodautoscalers"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("batch", "v1", "jobs"),
    ("certificates.k8s.io", "v1", "certificatesigningrequests"),
    ("coordination.k8s.io", "v1", "leases"),
    ("discovery.k8s.io", "v1", "endpointslices"),
    ("events.k8s.io", "v1", "events"),
    ("networking.k8s.io", "v1", "ingresses"),
    ("node.k8s.io", "v1", "runtimeclasses"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("scheduling.k8s.io", "v1", "priorityclasses"),
    ("storage.k8s.io", "v1", "csinodes"),
]


def group_version(group, version):
    """schema.GroupVersion.String(): the core group's versions have no group part."""
    return f"{group}/{version}" if group else version


def raw_aggregated_discovery(api_client, path):
    """GET /api or /apis asking only for the v2 aggregated document; the decoded APIGroupDiscoveryList."""
    document = json.loads(raw_get(api_client, path, AGGREGATED_V2).data)
    assert document.get("kind") == "APIGroupDiscoveryList", f"GET {path} did not answer an aggregated document"
    assert document.get("apiVersion") == "apidiscovery.k8s.io/v2", f"GET {path}: {document.get('apiVersion')}"
    return document


def gvr_in_aggregated(document, gvr):
    """Whether an APIGroupDiscoveryList lists the resource under its group and version."""
    group, version, resource = gvr
    return any(
        entry.get("resource") == resource
        for listed_group in document.get("items") or []
        if (listed_group.get("metadata") or {}).get("name", "") == group
        for listed_version in listed_group.get("versions") or []
        if listed_version.get("version") == version
        for entry in listed_version.get("resources") or []
    )


def aggregated_groups_and_resources(api_client):
    """client-go's AggregatedDiscoveryInterface.GroupsAndMaybeResources, requests and decoding.

    GET /api and /apis with client-go's Accept list; an answer whose Content-Type names the v2 aggregated document
    is split into the groups (an APIGroupList: each version, the first one preferred) and the resources of each group
    version. Versions marked Stale are left out of the resources, as client-go reports them as failed instead.
    """
    groups, resources_by_gv = [], {}
    for path in ("/api", "/apis"):
        response = raw_get(api_client, path, DISCOVERY_ACCEPT)
        kind, parameters = media_type(response.headers.get("Content-Type"))
        aggregated = kind == "application/json" and parameters.get("g") == "apidiscovery.k8s.io"
        assert aggregated and parameters.get("v") == "v2" and parameters.get("as") == "APIGroupDiscoveryList", (
            f"GET {path} with {DISCOVERY_ACCEPT!r} should answer the v2 aggregated document; "
            f"Content-Type: {response.headers.get('Content-Type')!r}"
        )
        document = json.loads(response.data)
        for listed_group in document.get("items") or []:
            name = (listed_group.get("metadata") or {}).get("name", "")
            versions = [
                {"groupVersion": group_version(name, entry["version"]), "version": entry["version"]}
                for entry in listed_group.get("versions") or []
            ]
            groups.append(
                {"name": name, "versions": versions, "preferredVersion": versions[0] if versions else None}
            )
            for entry in listed_group.get("versions") or []:
                if entry.get("freshness") == "Stale":
                    continue
                names = []
                for resource in entry.get("resources") or []:
                    names.append(resource["resource"])
                    for subresource in resource.get("subresources") or []:
                        names.append(f"{resource['resource']}/{subresource['subresource']}")
                resources_by_gv[(name, entry["version"])] = names
    return {"kind": "APIGroupList", "groups": groups}, resources_by_gv


def gv_in_group_list(group_list, group, version):
    return any(
        listed["name"] == group and any(entry["version"] == version for entry in listed["versions"])
        for listed in group_list["groups"]
    )


def gvr_in_resources(resources_by_gv, gvr):
    group, version, resource = gvr
    return resource in (resources_by_gv.get((group, version)) or [])


def test_aggregateddiscovery_should_support_raw_aggregated_discovery_endpoint_accept_headers(api_client):
    """AggregatedDiscovery should support raw aggregated discovery endpoint Accept headers.

    Upstream: test/e2e/apimachinery/aggregated_discovery.go. GET /apis and GET /api with the Accept header of the v2
    aggregated document only; the decoded APIGroupDiscoveryLists must list every expected built-in resource under its
    group and version (and namespaces under the core v1).
    """
    apis = raw_aggregated_discovery(api_client, "/apis")
    missing = [gvr for gvr in EXPECTED_GVRS if not gvr_in_aggregated(apis, gvr)]
    assert not missing, f"not in the aggregated /apis document: {missing}"

    legacy = raw_aggregated_discovery(api_client, "/api")
    missing = [gvr for gvr in EXPECTED_LEGACY_GVRS if not gvr_in_aggregated(legacy, gvr)]
    assert not missing, f"not in the aggregated /api document: {missing}"


def test_aggregateddiscovery_should_support_aggregated_discovery_interface(api_client):
    """AggregatedDiscovery should support aggregated discovery interface.

    Upstream: test/e2e/apimachinery/aggregated_discovery.go, through client-go's AggregatedDiscoveryInterface. Here
    its requests are made by hand (`aggregated_groups_and_resources`): /api and /apis with client-go's Accept list
    must answer aggregated documents; every expected resource must be among the resources of its group version, and
    every expected group version among the groups.
    """
    group_list, resources_by_gv = aggregated_groups_and_resources(api_client)
    expected = EXPECTED_GVRS + EXPECTED_LEGACY_GVRS

    missing = [gvr for gvr in expected if not gvr_in_resources(resources_by_gv, gvr)]
    assert not missing, f"resources missing from aggregated discovery: {missing}"
    assert group_list["groups"], "aggregated discovery should list API groups"
    missing = [(group, version) for group, version, _ in expected if not gv_in_group_list(group_list, group, version)]
    assert not missing, f"group versions missing from aggregated discovery: {missing}"


def discovery_test_crd():
    """The CRD both aggregated-discovery CRD entries add: namespaced `testcrds` in a group with a random name."""
    group = f"group{random_suffix()}.example.com"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"testcrds.{group}"},
        "spec": {
            "group": group,
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
            "names": {"plural": "testcrds", "singular": "testcrd", "kind": "testcrd", "listKind": "testcrdList"},
            "scope": "Namespaced",
        },
    }


def test_aggregateddiscovery_should_support_raw_aggregated_discovery_request_for_crds(api_client):
    """AggregatedDiscovery should support raw aggregated discovery request for CRDs.

    Upstream: test/e2e/apimachinery/aggregated_discovery.go. After a CRD is added, GET /apis with the v2 aggregated
    Accept header is polled until the aggregated document lists the CRD's resource under its group and version.
    """
    crd = discovery_test_crd()
    gvr = (crd["spec"]["group"], "v1", "testcrds")
    create_crd(api_client, crd)
    try:
        wait_until(
            lambda: (gvr_in_aggregated(raw_aggregated_discovery(api_client, "/apis"), gvr), "not listed yet"),
            f"{gvr} in the aggregated /apis document",
        )
    finally:
        delete_crd(api_client, crd["metadata"]["name"])


def test_aggregateddiscovery_should_support_aggregated_discovery_interface_for_crds(api_client):
    """AggregatedDiscovery should support aggregated discovery interface for CRDs.

    Upstream: test/e2e/apimachinery/aggregated_discovery.go. After a CRD is added, client-go's aggregated discovery
    (its requests made by hand, as in the entry above) is polled until the CRD's resource is among the resources of
    its group version.
    """
    crd = discovery_test_crd()
    gvr = (crd["spec"]["group"], "v1", "testcrds")
    create_crd(api_client, crd)
    try:

        def listed():
            _, resources_by_gv = aggregated_groups_and_resources(api_client)
            return gvr_in_resources(resources_by_gv, gvr), resources_by_gv.get(gvr[:2])

        wait_until(listed, f"{gvr} in aggregated discovery")
    finally:
        delete_crd(api_client, crd["metadata"]["name"])


def test_customresourcedefinition_should_include_custom_resource_definition_resources_in_discovery_documents(
    api_client,
):
    """CustomResourceDefinition resources should include custom resource definition resources in discovery documents.

    Upstream: test/e2e/apimachinery/custom_resource_definition.go. The plain (unaggregated) JSON documents: /apis lists
    the apiextensions.k8s.io group with version v1; /apis/apiextensions.k8s.io names that group and lists v1;
    /apis/apiextensions.k8s.io/v1 is the apiextensions.k8s.io/v1 resource list and holds customresourcedefinitions.
    """
    group_list = call(api_client, "GET", "/apis")
    assert group_list.get("kind") == "APIGroupList", group_list.get("kind")
    group = next((g for g in group_list.get("groups") or [] if g.get("name") == "apiextensions.k8s.io"), None)
    assert group is not None, "apiextensions.k8s.io API group not found in the /apis discovery document"
    assert any(v.get("version") == "v1" for v in group.get("versions") or []), group

    group = call(api_client, "GET", "/apis/apiextensions.k8s.io")
    assert group.get("kind") == "APIGroup", group.get("kind")
    assert group.get("name") == "apiextensions.k8s.io", group
    assert any(v.get("version") == "v1" for v in group.get("versions") or []), group

    resource_list = call(api_client, "GET", "/apis/apiextensions.k8s.io/v1")
    assert resource_list.get("kind") == "APIResourceList", resource_list.get("kind")
    assert resource_list.get("groupVersion") == "apiextensions.k8s.io/v1", resource_list.get("groupVersion")
    names = [resource.get("name") for resource in resource_list.get("resources") or []]
    assert "customresourcedefinitions" in names, names


def test_discovery_should_locate_the_groupversion_and_a_resource_within_each_apigroup(api_client):
    """Discovery should locate the groupVersion and a resource within each APIGroup.

    Upstream: test/e2e/apimachinery/discovery.go. For each expected group version, GET /api/v1 or /apis/GROUP/VERSION:
    the APIResourceList's groupVersion must be that group version, and it must hold the expected resource.
    """
    for group, version, resource in EXPECTED_LEGACY_GVRS + EXPECTED_GVRS:
        path = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        resource_list = call(api_client, "GET", path)
        assert resource_list.get("groupVersion") == group_version(group, version), (path, resource_list)
        names = [entry.get("name") for entry in resource_list.get("resources") or []]
        assert resource in names, f"resource {resource!r} was not found in the resource list of {path}: {names}"


def test_discovery_should_validate_preferredversion_for_each_apigroup(api_client):
    """Discovery should validate PreferredVersion for each APIGroup.

    Upstream: test/e2e/apimachinery/discovery.go. GET /apis/ (with the trailing slash client-go keeps) lists the
    groups; for each (except groups ending in .example.com, which other tests add and remove), GET /apis/GROUP/ must
    answer the group with at least one version, and its preferredVersion must be one of them.
    """
    group_list = call(api_client, "GET", "/apis/")
    groups = group_list.get("groups") or []
    assert groups, "GET /apis/ lists no API groups"
    for listed in groups:
        if listed["name"].endswith(".example.com"):
            continue
        group = call(api_client, "GET", f"/apis/{listed['name']}/")
        versions = [entry.get("groupVersion") for entry in group.get("versions") or []]
        assert versions, f"no version found for {listed['name']}"
        preferred = (group.get("preferredVersion") or {}).get("groupVersion")
        assert preferred in versions, f"{listed['name']}: preferred version {preferred!r} is not one of {versions}"


# ---------------------------------------------------------------------------------------------------------------------
# CustomResourcePublishOpenAPI
# ---------------------------------------------------------------------------------------------------------------------

# The schemas of crd_publish_openapi.go's tests, written out here: a Foo with objects, arrays and primitives
# (a required field, an enum, a pattern), a smaller Waldo, and two that keep unknown fields (at the root, in spec).
SCHEMA_FOO = {
    "description": "Foo CRD for Testing",
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "description": "Specification of Foo",
            "properties": {
                "bars": {
                    "description": "List of Bars and their specs.",
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"description": "Name of Bar.", "type": "string"},
                            "age": {"description": "Age of Bar.", "type": "string"},
                            "feeling": {
                                "description": "Whether Bar is feeling great.",
                                "type": "string",
                                "enum": ["Great", "Down"],
                            },
                            "bazs": {"description": "List of Bazs.", "items": {"type": "string"}, "type": "array"},
                        },
                    },
                },
            },
        },
        "status": {
            "description": "Status of Foo",
            "type": "object",
            "properties": {
                "bars": {
                    "description": "List of Bars and their statuses.",
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"description": "Name of Bar.", "type": "string"},
                            "available": {"description": "Whether the Bar is installed.", "type": "boolean"},
                            "quxType": {
                                "description": "Indicates to external qux type.",
                                "pattern": "in-tree|out-of-tree",
                                "type": "string",
                            },
                        },
                    },
                },
            },
        },
    },
}

WALDO_SPEC_AND_STATUS = {
    "spec": {
        "description": "Specification of Waldo",
        "type": "object",
        "properties": {"dummy": {"description": "Dummy property.", "type": "object"}},
    },
    "status": {
        "description": "Status of Waldo",
        "type": "object",
        "properties": {
            "bars": {
                "description": "List of Bars and their statuses.",
                "type": "array",
                "items": {"type": "object"},
            },
        },
    },
}

SCHEMA_WALDO = {"description": "Waldo CRD for Testing", "type": "object", "properties": WALDO_SPEC_AND_STATUS}

SCHEMA_PRESERVE_ROOT = {
    "description": "preserve-unknown-properties at root for Testing",
    "x-kubernetes-preserve-unknown-fields": True,
    "type": "object",
    "properties": WALDO_SPEC_AND_STATUS,
}

SCHEMA_PRESERVE_NESTED = {
    "description": "preserve-unknown-properties in nested field for Testing",
    "type": "object",
    "properties": {
        "spec": {**WALDO_SPEC_AND_STATUS["spec"], "x-kubernetes-preserve-unknown-fields": True},
        "status": WALDO_SPEC_AND_STATUS["status"],
    },
}

# What a CRD without a validation schema gets (upstream's setupCRD with a nil schema): any field is kept. /openapi/v2
# defines such a kind as a bare object (apiextensions-apiserver's buildKubeNative leaves out the properties when the
# root keeps unknown fields, so that kubectl's client-side validation accepts any field); v3 publishes the schema as
# written.
SCHEMA_NONE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
SCHEMA_NONE_V2 = {"type": "object"}


def publish_test_crd(group_suffix, versions, schema):
    """test/utils/crd's CreateMultiVersionTestCRD as crd_publish_openapi.go calls it: a namespaced CRD with a random
    kind in group crd-publish-openapi-test-SUFFIX.example.com, every version served, the first one stored, each with
    the same schema."""
    name = f"e2e-test-crd-publish-openapi-{random_suffix()}-crd"
    group = f"crd-publish-openapi-test-{group_suffix}.example.com"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{name}s.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": f"{name}s", "singular": name, "kind": name, "listKind": f"{name}List"},
            "versions": [
                {"name": version, "served": True, "storage": index == 0, "schema": {"openAPIV3Schema": schema}}
                for index, version in enumerate(versions)
            ],
        },
    }


def create_crd_served_in_every_version(api_client, crd):
    """Create the CRD, then wait until discovery lists its resource in each served version (upstream's fixture)."""
    created = call(api_client, "POST", CRDS, crd)
    group, plural = created["spec"]["group"], created["spec"]["names"]["plural"]
    for version in [v["name"] for v in created["spec"]["versions"] if v["served"]]:

        def served():
            try:
                resources = call(api_client, "GET", f"/apis/{group}/{version}")["resources"]
            except ApiException as error:
                if error.status != 404:
                    raise
                return False, "group version not served yet"
            names = [resource["name"] for resource in resources]
            return plural in names, names

        wait_until(served, f"{plural}.{group}/{version} in discovery", interval=0.1)
    return created


def definition_name(crd, version):
    """openapiutil.ToRESTFriendlyName of GROUP/VERSION/KIND: the group's labels reversed, then version and kind."""
    group = ".".join(reversed(crd["spec"]["group"].split(".")))
    return f"{group}.{version}.{crd['spec']['names']['kind']}"


def comparable_schema(schema):
    """A schema as kube-openapi's spec.Schema reads it, for comparing two of them as upstream does.

    A single type and a list of one type decode alike; empty maps and lists compare equal to absent ones (as with
    apimachinery's semantic equality); nested schemas are read the same way.
    """
    if not isinstance(schema, dict):
        return schema
    result = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            value = [value]
        elif key in ("properties", "patternProperties", "definitions") and isinstance(value, dict):
            value = {name: comparable_schema(inner) for name, inner in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, list):
            value = [comparable_schema(inner) for inner in value]
        elif key in ("items", "additionalProperties", "not"):
            value = comparable_schema(value)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            value = [comparable_schema(inner) for inner in value]
        if value in ({}, [], None):
            continue
        result[key] = value
    return result


def without_added_fields(published):
    """Upstream's dropDefaults: take away what the server adds to a CRD's schema when it publishes it (the metadata,
    apiVersion and kind properties, the group-version-kind and selectable-fields extensions)."""
    published = copy.deepcopy(published)
    for name in ("metadata", "apiVersion", "kind"):
        (published.get("properties") or {}).pop(name, None)
    published.pop("x-kubernetes-group-version-kind", None)
    published.pop("x-kubernetes-selectable-fields", None)
    return published


def same_schema(published, expected):
    """Whether a published definition, without what the server adds, is the expected schema (None: any schema)."""
    return expected is None or comparable_schema(without_added_fields(published)) == comparable_schema(expected)


class PublishedOpenAPI:
    """Reads the OpenAPI documents of the server, v2 and v3, as the upstream test and client-go do.

    /openapi/v2 is read with If-None-Match and the ETag of the previous answer, reusing the document on 304, like
    upstream's waitForOpenAPISchema. /openapi/v3 is read like client-go's openapi3 root: the index lists each group
    version's document under "apis/GROUP/VERSION" with a URL that carries a hash of its content; a group version the
    index does not list has no document (openapi3.GroupVersionNotFoundError).
    """

    def __init__(self, api_client):
        self.api_client = api_client
        self.v2_etag = None
        self.v2_document = None

    def v2_definitions(self):
        extra = {"If-None-Match": f'"{self.v2_etag}"'} if self.v2_etag else {}
        try:
            response = raw_get(self.api_client, "/openapi/v2", "application/json", extra)
        except ApiException as error:
            if error.status == 304 and self.v2_document is not None:
                return self.v2_document.get("definitions") or {}
            raise
        self.v2_document = json.loads(response.data)
        self.v2_etag = (response.headers.get("ETag") or "").strip('"') or None
        return self.v2_document.get("definitions") or {}

    def v3_schemas(self, group, version):
        """The components.schemas of GROUP/VERSION's OpenAPI v3 document; None if the index does not list it."""
        index = call(self.api_client, "GET", "/openapi/v3")
        entry = (index.get("paths") or {}).get(f"apis/{group}/{version}")
        if entry is None:
            return None
        document = json.loads(raw_get(self.api_client, entry["serverRelativeURL"], "application/json").data)
        return (document.get("components") or {}).get("schemas") or {}

    def check(self, crd, version, expected_v2, expected_v3):
        """Whether both documents define the CRD's kind in `version`, each with the expected schema (None: whatever
        schema); and what was seen, for the failure message."""
        name = definition_name(crd, version)
        published_v2 = self.v2_definitions().get(name)
        if published_v2 is None:
            return False, f"/openapi/v2 has no definition {name}"
        if not same_schema(published_v2, expected_v2):
            return False, f"/openapi/v2 definition {name} is {published_v2}, expected {expected_v2}"
        schemas = self.v3_schemas(crd["spec"]["group"], version)
        if schemas is None or name not in schemas:
            return False, f"/openapi/v3 has no schema {name} for {crd['spec']['group']}/{version}"
        if not same_schema(schemas[name], expected_v3):
            return False, f"/openapi/v3 schema {name} is {schemas[name]}, expected {expected_v3}"
        return True, "published"

    def wait_for_definition(self, crd, version, expected_v2, expected_v3):
        wait_until(
            lambda: self.check(crd, version, expected_v2, expected_v3),
            f"the OpenAPI definition of {definition_name(crd, version)}",
            timeout=OPENAPI_TIMEOUT,
        )

    def wait_for_definition_gone(self, crd, version):
        name = definition_name(crd, version)

        def gone():
            if name in self.v2_definitions():
                return False, f"/openapi/v2 still defines {name}"
            schemas = self.v3_schemas(crd["spec"]["group"], version)
            if schemas is not None and name in schemas:
                return False, f"/openapi/v3 still has {name}"
            return True, "gone"

        wait_until(gone, f"the OpenAPI definition {name} to be removed", timeout=OPENAPI_TIMEOUT)


class CrdPublishing:
    """Upstream's setupCRD, setupCRDAndVerifySchema and cleanupCRD, with the OpenAPI reader they poll. Every CRD it
    creates is remembered until `cleanup`, so that the fixture can delete what a failed test left behind."""

    def __init__(self, api_client):
        self.api_client = api_client
        self.openapi = PublishedOpenAPI(api_client)
        self.created = {}

    def setup_and_verify_schema(self, group_suffix, versions, schema, expected_v2, expected_v3):
        """Create the CRD, then wait until every version is published with the expected schemas."""
        crd = publish_test_crd(group_suffix, versions, schema)
        self.created[crd["metadata"]["name"]] = crd
        crd = create_crd_served_in_every_version(self.api_client, crd)
        for version in versions:
            self.wait_for_definition(crd, version, expected_v2, expected_v3)
        return crd

    def setup(self, group_suffix, versions, schema):
        """The published schema must be the CRD's own, in v2 and v3; a CRD without a schema is a bare object in v2
        (see SCHEMA_NONE)."""
        if schema is None:
            return self.setup_and_verify_schema(group_suffix, versions, SCHEMA_NONE, SCHEMA_NONE_V2, SCHEMA_NONE)
        return self.setup_and_verify_schema(group_suffix, versions, schema, schema, schema)

    def wait_for_definition(self, crd, version, expected_v2, expected_v3):
        self.openapi.wait_for_definition(crd, version, expected_v2, expected_v3)

    def wait_for_definition_gone(self, crd, version):
        self.openapi.wait_for_definition_gone(crd, version)

    def cleanup(self, crd):
        """Delete the CRD, then wait until none of its versions is published any more."""
        delete_crd(self.api_client, crd["metadata"]["name"])
        self.created.pop(crd["metadata"]["name"], None)
        for version in crd["spec"]["versions"]:
            self.openapi.wait_for_definition_gone(crd, version["name"])


@pytest.fixture
def publishing(api_client):
    publishing = CrdPublishing(api_client)
    yield publishing
    for name in list(publishing.created):
        try:
            delete_crd(api_client, name)
        except Exception:  # the test's own failure is the one to report
            pass


@pytest.fixture
def kubectl():
    """kubectl with a discovery and OpenAPI cache of its own; returns (exit status, stdout and stderr together)."""
    with tempfile.TemporaryDirectory(prefix="kubectl-cache-") as cache_dir:

        def run(*arguments, stdin=None):
            result = subprocess.run(
                [KUBECTL, f"--cache-dir={cache_dir}", *arguments],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=60,
            )
            return result.returncode, result.stdout + result.stderr

        yield run


def custom_resource_json(crd, name, rest):
    """A custom resource of the CRD's first version as kubectl reads it from stdin: TypeMeta, a name, then `rest`."""
    document = {
        "kind": crd["spec"]["names"]["kind"],
        "apiVersion": f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}",
        "metadata": {"name": name},
    }
    document.update(rest)
    return json.dumps(document)


def expect_kubectl_ok(kubectl, *arguments, stdin=None):
    status, output = kubectl(*arguments, stdin=stdin)
    assert status == 0, f"kubectl {' '.join(arguments)} failed ({status}): {output}"
    return output


def expect_kubectl_error(kubectl, patterns, *arguments, stdin=None):
    """kubectl must fail, and its output must contain one of `patterns`."""
    status, output = kubectl(*arguments, stdin=stdin)
    assert status != 0, f"kubectl {' '.join(arguments)} should have failed; output: {output}"
    assert any(pattern in output for pattern in patterns), (
        f"kubectl {' '.join(arguments)} failed without any of {patterns}: {output}"
    )


def create_apply_and_delete(kubectl, namespace, crd, name, document):
    """Upstream's first step: `kubectl create -f -`, delete, `kubectl apply -f -`, delete; each must succeed."""
    plural = crd["spec"]["names"]["plural"]
    expect_kubectl_ok(kubectl, f"--namespace={namespace}", "create", "-f", "-", stdin=document)
    expect_kubectl_ok(kubectl, f"--namespace={namespace}", "delete", plural, name)
    expect_kubectl_ok(kubectl, f"--namespace={namespace}", "apply", "-f", "-", stdin=document)
    expect_kubectl_ok(kubectl, f"--namespace={namespace}", "delete", plural, name)


def expect_explain(kubectl, what, pattern):
    """`kubectl explain WHAT` must succeed and match the regular expression (dot matching newlines)."""
    output = expect_kubectl_ok(kubectl, "explain", what)
    assert re.search(pattern, output, re.DOTALL), f"kubectl explain {what}: {output!r} does not match {pattern!r}"


def test_customresourcepublishopenapi_works_for_crd_with_validation_schema(namespace, publishing, kubectl):
    """CustomResourcePublishOpenAPI works for CRD with validation schema.

    Upstream: test/e2e/apimachinery/crd_publish_openapi.go. The Foo schema is published; kubectl create and apply
    accept a valid Foo; kubectl create refuses one with a value outside the enum; kubectl create and apply refuse one
    with an unknown field in spec and one without a required field; kubectl explain describes the kind, its metadata,
    spec and spec.bars, and fails on a field that does not exist.
    """
    crd = publishing.setup("foo", ["v1"], SCHEMA_FOO)
    plural = crd["spec"]["names"]["plural"]
    ns = f"--namespace={namespace}"

    valid = custom_resource_json(crd, "test-foo", {"spec": {"bars": [{"name": "test-bar"}]}})
    create_apply_and_delete(kubectl, namespace, crd, "test-foo", valid)

    bad_enum = custom_resource_json(
        crd, "test-foo", {"spec": {"bars": [{"name": "test-bar", "feeling": "NonExistentValue"}]}}
    )
    expect_kubectl_error(kubectl, ['Unsupported value: "NonExistentValue"'], ns, "create", "-f", "-", stdin=bad_enum)

    unknown = custom_resource_json(crd, "test-foo", {"spec": {"foo": True}})
    unknown_errors = ['unknown field "foo"', 'unknown field "spec.foo"']
    expect_kubectl_error(kubectl, unknown_errors, ns, "create", "-f", "-", stdin=unknown)
    expect_kubectl_error(kubectl, unknown_errors, ns, "apply", "-f", "-", stdin=unknown)

    no_required = custom_resource_json(crd, "test-foo", {"spec": {"bars": [{"age": "10"}]}})
    required_errors = ['missing required field "name"', "spec.bars[0].name: Required value"]
    expect_kubectl_error(kubectl, required_errors, ns, "create", "-f", "-", stdin=no_required)
    expect_kubectl_error(kubectl, required_errors, ns, "apply", "-f", "-", stdin=no_required)

    expect_explain(
        kubectl,
        plural,
        r"DESCRIPTION:.*Foo CRD for Testing.*FIELDS:.*apiVersion.*<string>.*APIVersion defines.*spec.*<Object>"
        r".*Specification of Foo",
    )
    expect_explain(
        kubectl,
        f"{plural}.metadata",
        r"DESCRIPTION:.*Standard object's metadata.*FIELDS:.*creationTimestamp.*<string>"
        r".*CreationTimestamp is a timestamp",
    )
    expect_explain(
        kubectl, f"{plural}.spec", r"DESCRIPTION:.*Specification of Foo.*FIELDS:.*bars.*<\[\]Object>.*List of Bars"
    )
    expect_explain(
        kubectl,
        f"{plural}.spec.bars",
        r"(FIELD|RESOURCE):.*bars.*<\[\]Object>.*DESCRIPTION:.*List of Bars and their specs.*FIELDS:.*bazs"
        r".*<\[\]string>.*List of Bazs.*name.*<string>.*Name of Bar",
    )
    expect_kubectl_error(kubectl, ['field "bars2" does not exist'], "explain", f"{plural}.spec.bars2")

    publishing.cleanup(crd)


def test_customresourcepublishopenapi_works_for_crd_without_validation_schema(namespace, publishing, kubectl):
    """CustomResourcePublishOpenAPI works for CRD without validation schema.

    Upstream: test/e2e/apimachinery/crd_publish_openapi.go. A CRD whose schema keeps every field (the v1 form of "no
    schema") is published in v2 as a bare object and in v3 as written (see SCHEMA_NONE); kubectl create and apply
    accept a resource with arbitrary fields; kubectl explain shows an empty description.
    """
    crd = publishing.setup("empty", ["v1"], None)

    anything = custom_resource_json(crd, "test-cr", {"a": {"b": [{"c": "d"}]}})
    create_apply_and_delete(kubectl, namespace, crd, "test-cr", anything)
    expect_explain(kubectl, crd["spec"]["names"]["plural"], r"DESCRIPTION:.*<empty>")

    publishing.cleanup(crd)


def test_customresourcepublishopenapi_works_for_crd_preserving_unknown_fields_at_the_schema_root(
    namespace, publishing, kubectl
):
    """CustomResourcePublishOpenAPI works for CRD preserving unknown fields at the schema root.

    Upstream: test/e2e/apimachinery/crd_publish_openapi.go. Upstream only checks that v2 defines the kind (its schema
    there is reduced to a bare object); v3 must publish the schema as written. kubectl create and apply accept
    arbitrary fields; kubectl explain names the kind.
    """
    schema = SCHEMA_PRESERVE_ROOT
    crd = publishing.setup_and_verify_schema("unknown-at-root", ["v1"], schema, None, schema)

    anything = custom_resource_json(crd, "test-cr", {"a": {"b": [{"c": "d"}]}})
    create_apply_and_delete(kubectl, namespace, crd, "test-cr", anything)
    expect_explain(kubectl, crd["spec"]["names"]["plural"], rf"KIND:.*{re.escape(crd['spec']['names']['kind'])}")

    publishing.cleanup(crd)


def test_customresourcepublishopenapi_works_for_crd_preserving_unknown_fields_in_an_embedded_object(
    namespace, publishing, kubectl
):
    """CustomResourcePublishOpenAPI works for CRD preserving unknown fields in an embedded object.

    Upstream: test/e2e/apimachinery/crd_publish_openapi.go. Upstream only checks that v2 defines the kind; v3 must
    publish the schema as written. kubectl create and apply accept unknown fields (and a null) in spec; kubectl
    explain shows the kind's description.
    """
    schema = SCHEMA_PRESERVE_NESTED
    crd = publishing.setup_and_verify_schema("unknown-in-nested", ["v1"], schema, None, schema)

    anything = custom_resource_json(crd, "test-cr", {"spec": {"a": None, "b": [{"c": "d"}]}})
    create_apply_and_delete(kubectl, namespace, crd, "test-cr", anything)
    expect_explain(
        kubectl,
        crd["spec"]["names"]["plural"],
        r"DESCRIPTION:.*preserve-unknown-properties in nested field for Testing",
    )

    publishing.cleanup(crd)


def test_customresourcepublishopenapi_works_for_multiple_crds_of_different_groups(publishing):
    """CustomResourcePublishOpenAPI works for multiple CRDs of different groups.

    Upstream: test/e2e/apimachinery/crd_publish_openapi.go. Two CRDs in two groups (Foo in v1, Waldo in v1beta1) are
    both published with their schemas, and both go away when they are deleted.
    """
    foo = publishing.setup("foo", ["v1"], SCHEMA_FOO)
    waldo = publishing.setup("waldo", ["v1beta1"], SCHEMA_WALDO)
    assert foo["spec"]["group"] != waldo["spec"]["group"]

    publishing.wait_for_definition(waldo, "v1beta1", SCHEMA_WALDO, SCHEMA_WALDO)
    publishing.wait_for_definition(foo, "v1", SCHEMA_FOO, SCHEMA_FOO)
    publishing.cleanup(foo)
    publishing.cleanup(waldo)


def test_customresourcepublishopenapi_works_for_multiple_crds_of_same_group_but_different_versions(publishing):
    """CustomResourcePublishOpenAPI works for multiple CRDs of same group but different versions.

    Upstream: test/e2e/apimachinery/crd_publish_openapi.go. One CRD with versions v2 and v3 is published in both;
    then two CRDs of one group, in v4 and v5, are published in theirs.
    """
    multi = publishing.setup("multi-ver", ["v2", "v3"], SCHEMA_FOO)
    publishing.wait_for_definition(multi, "v3", SCHEMA_FOO, SCHEMA_FOO)
    publishing.wait_for_definition(multi, "v2", SCHEMA_FOO, SCHEMA_FOO)
    publishing.cleanup(multi)

    foo = publishing.setup("common-group", ["v4"], SCHEMA_FOO)
    waldo = publishing.setup("common-group", ["v5"], SCHEMA_WALDO)
    assert foo["spec"]["group"] == waldo["spec"]["group"]
    publishing.wait_for_definition(waldo, "v5", SCHEMA_WALDO, SCHEMA_WALDO)
    publishing.wait_for_definition(foo, "v4", SCHEMA_FOO, SCHEMA_FOO)
    publishing.cleanup(foo)
    publishing.cleanup(waldo)


def test_customresourcepublishopenapi_works_for_multiple_crds_of_same_group_and_version_but_different_kinds(publishing):
    """CustomResourcePublishOpenAPI works for multiple CRDs of same group and version but different kinds.

    Upstream: test/e2e/apimachinery/crd_publish_openapi.go. Two CRDs of one group, both in v6 with different kinds,
    are both published with their own schemas (in v3, in one group-version document).
    """
    foo = publishing.setup("common-group", ["v6"], SCHEMA_FOO)
    waldo = publishing.setup("common-group", ["v6"], SCHEMA_WALDO)
    assert foo["spec"]["group"] == waldo["spec"]["group"]
    publishing.wait_for_definition(waldo, "v6", SCHEMA_WALDO, SCHEMA_WALDO)
    publishing.wait_for_definition(foo, "v6", SCHEMA_FOO, SCHEMA_FOO)
    publishing.cleanup(foo)
    publishing.cleanup(waldo)


def test_customresourcepublishopenapi_updates_the_published_spec_when_one_version_gets_renamed(
    api_client, publishing
):
    """CustomResourcePublishOpenAPI updates the published spec when one version gets renamed.

    Upstream: test/e2e/apimachinery/crd_publish_openapi.go. A CRD with versions v2 and v3 is published in both; a
    JSON patch (test, then replace) renames v3 to v4; then v4 is published, v3 is not any more, and v2 is unchanged.
    """
    crd = publishing.setup("multi-ver", ["v2", "v3"], SCHEMA_FOO)
    publishing.wait_for_definition(crd, "v3", SCHEMA_FOO, SCHEMA_FOO)
    publishing.wait_for_definition(crd, "v2", SCHEMA_FOO, SCHEMA_FOO)

    patch = [
        {"op": "test", "path": "/spec/versions/1/name", "value": "v3"},
        {"op": "replace", "path": "/spec/versions/1/name", "value": "v4"},
    ]
    crd = call(api_client, "PATCH", f"{CRDS}/{crd['metadata']['name']}", patch, content_type=JSON_PATCH)
    assert [version["name"] for version in crd["spec"]["versions"]] == ["v2", "v4"], crd["spec"]["versions"]

    publishing.wait_for_definition(crd, "v4", SCHEMA_FOO, SCHEMA_FOO)
    publishing.wait_for_definition_gone(crd, "v3")
    publishing.wait_for_definition(crd, "v2", SCHEMA_FOO, SCHEMA_FOO)

    publishing.cleanup(crd)


def test_customresourcepublishopenapi_removes_definition_from_spec_when_one_version_gets_changed_to_not_be_served(
    api_client, publishing
):
    """CustomResourcePublishOpenAPI removes definition from spec when one version gets changed to not be served.

    Upstream: test/e2e/apimachinery/crd_publish_openapi.go. A CRD with versions v5 and v6alpha1 is published in both;
    an update (GET, then PUT) marks v6alpha1 not served; then v6alpha1 is not published any more and v5 is unchanged.
    """
    crd = publishing.setup("multi-to-single-ver", ["v5", "v6alpha1"], SCHEMA_FOO)
    publishing.wait_for_definition(crd, "v6alpha1", SCHEMA_FOO, SCHEMA_FOO)
    publishing.wait_for_definition(crd, "v5", SCHEMA_FOO, SCHEMA_FOO)

    name = crd["metadata"]["name"]
    crd = call(api_client, "GET", f"{CRDS}/{name}")
    crd["spec"]["versions"][1]["served"] = False
    crd = call(api_client, "PUT", f"{CRDS}/{name}", crd)
    assert crd["spec"]["versions"][1]["served"] is False, crd["spec"]["versions"]

    publishing.wait_for_definition_gone(crd, "v6alpha1")
    publishing.wait_for_definition(crd, "v5", SCHEMA_FOO, SCHEMA_FOO)

    publishing.cleanup(crd)


# ---------------------------------------------------------------------------------------------------------------------
# CustomResourceDefinition defaulting
# ---------------------------------------------------------------------------------------------------------------------


def test_customresourcedefinition_custom_resource_defaulting_for_requests_and_from_storage_works(api_client):
    """CustomResourceDefinition resources custom resource defaulting for requests and from storage works.

    Upstream: test/e2e/apimachinery/custom_resource_definition.go. A cluster-scoped CRD with string fields a and b
    and no defaults; cr-1 is stored without a. A JSON patch gives a the default "A", and a new cr-2 is created with
    a: "A". A second patch removes a's default and gives b the default "B"; cr-2 keeps the a: "A" it was stored with.

    Stored objects are defaulted when read: once a has a default, cr-1 (stored without a) reads with a: "A"; once b
    has one, cr-2 reads with b: "B".
    """
    crd = random_name_crd()
    crd["spec"]["versions"][0]["schema"] = copy.deepcopy(crd["spec"]["versions"][0]["schema"])
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"] = {
        "a": {"type": "string"},
        "b": {"type": "string"},
    }
    crd = create_crd(api_client, crd)
    name = crd["metadata"]["name"]
    group, version, plural = crd["spec"]["group"], crd["spec"]["versions"][0]["name"], crd["spec"]["names"]["plural"]
    resources = f"/apis/{group}/{version}/{plural}"
    properties = "/spec/versions/0/schema/openAPIV3Schema/properties"

    def new_resource(resource_name):
        kind = crd["spec"]["names"]["kind"]
        return {"apiVersion": f"{group}/{version}", "kind": kind, "metadata": {"name": resource_name}}

    try:
        name1 = f"cr-1{random_suffix()}"
        created = call(api_client, "POST", resources, new_resource(name1))
        assert "a" not in created and "b" not in created, f"nothing to default yet: {created}"

        patch = [{"op": "add", "path": f"{properties}/a/default", "value": "A"}]
        call(api_client, "PATCH", f"{CRDS}/{name}", patch, content_type=JSON_PATCH)

        # The server takes up a changed CRD asynchronously: reading cr-1 until it is defaulted waits for it.
        def cr1_defaulted():
            read = call(api_client, "GET", f"{resources}/{name1}")
            return read.get("a") == "A", read

        wait_until(cr1_defaulted, "cr-1, stored without a, to read with a: A", interval=0.1)

        name2 = f"cr-2{random_suffix()}"
        created = call(api_client, "POST", resources, new_resource(name2))
        assert created.get("a") == "A", f"a should be defaulted to A on create: {created}"
        assert "b" not in created, f"b has no default yet: {created}"

        patch = [
            {"op": "remove", "path": f"{properties}/a/default"},
            {"op": "add", "path": f"{properties}/b/default", "value": "B"},
        ]
        call(api_client, "PATCH", f"{CRDS}/{name}", patch, content_type=JSON_PATCH)

        def cr2_defaulted():
            read = call(api_client, "GET", f"{resources}/{name2}")
            return read.get("b") == "B", read

        wait_until(cr2_defaulted, "cr-2 to read with b: B", interval=0.1)
        read = call(api_client, "GET", f"{resources}/{name2}")
        assert read.get("a") == "A", f"a should stay A as stored when its default is removed: {read}"
    finally:
        delete_crd(api_client, name)


# ---------------------------------------------------------------------------------------------------------------------
# Garbage collector
# ---------------------------------------------------------------------------------------------------------------------


def test_garbage_collector_should_not_be_blocked_by_dependency_circle(core, namespace):
    """Garbage collector should not be blocked by dependency circle.

    Upstream: test/e2e/apimachinery/garbage_collector.go. Three pods own each other in a cycle (pod1 is owned by
    pod3, pod2 by pod1, pod3 by pod2, each reference blocking its owner's deletion); deleting pod1 in the foreground
    must still remove all three. The pods need not run.
    """
    names = ["pod1", "pod2", "pod3"]
    pods = {}
    for name in names:
        pods[name] = core.create_namespaced_pod(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "nginx", "image": "registry.k8s.io/e2e-test-images/nginx:1.14-4"}]},
            },
        )

    def owned_by(owner):
        return {"metadata": {"ownerReferences": [{
            "apiVersion": "v1", "kind": "Pod", "name": owner, "uid": pods[owner].metadata.uid,
            "controller": True, "blockOwnerDeletion": True,
        }]}}

    for dependent, owner in (("pod1", "pod3"), ("pod2", "pod1"), ("pod3", "pod2")):
        core.patch_namespaced_pod(dependent, namespace, owned_by(owner))

    core.delete_namespaced_pod(
        "pod1",
        namespace,
        body={"propagationPolicy": "Foreground", "preconditions": {"uid": pods["pod1"].metadata.uid}},
    )

    def all_gone():
        left = [pod.metadata.name for pod in core.list_namespaced_pod(namespace).items if pod.metadata.name in names]
        return left == [], left

    wait_until(all_gone, "the three pods of the cycle to be deleted", timeout=60)
