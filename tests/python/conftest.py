"""Fixtures for driving a running kaasd API server with the official Python `kubernetes` client.

The server is whatever `KUBECONFIG` names (the Rust test `python_client.rs` starts a fresh `kaasd controller` and
points it there). Every test gets its own namespace, so tests neither see nor disturb each other's objects.
"""

import os
import uuid

import pytest
from kubernetes import client, config


@pytest.fixture(scope="session")
def api_client():
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        pytest.fail("KUBECONFIG is not set: these tests need a running API server to talk to")
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        yield api


@pytest.fixture(scope="session")
def core(api_client):
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def apps(api_client):
    return client.AppsV1Api(api_client)


@pytest.fixture
def namespace(core):
    """A fresh namespace for one test, deleted afterwards (without waiting for it to be gone)."""
    name = "py-" + uuid.uuid4().hex[:10]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException:
        pass


@pytest.fixture
def client_with_content_type(api_client):
    """A second client whose every request carries a fixed Content-Type.

    The generated typed `patch_*` methods of this client version always ask for JSON patch (and fall back to
    strategic merge for a dict body); a default header is the documented way to send a merge patch instead.
    """
    clients = []

    def make(content_type):
        extra = client.ApiClient(api_client.configuration)
        extra.set_default_header("Content-Type", content_type)
        clients.append(extra)
        return extra

    yield make
    for extra in clients:
        extra.close()
