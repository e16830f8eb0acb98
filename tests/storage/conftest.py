"""Roots for the store tests: the session's ``$LUMI_HOME/store``, and ``s3://`` on a local S3 server (moto)."""

from __future__ import annotations

import contextlib
import uuid

import pytest


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """``{"root": url, "storage_options": {...}}`` for a store: a fresh local folder, or a fresh S3 bucket."""
    if request.param == "local":
        return {"root": str(tmp_path / "store"), "storage_options": {}}
    endpoint = request.getfixturevalue("s3_server")
    import boto3

    bucket = f"lumi-store-{uuid.uuid4().hex[:12]}"
    options = {"endpoint_url": endpoint, "key": "test", "secret": "test",
               "client_kwargs": {"region_name": "us-east-1"}}
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    return {"root": f"s3://{bucket}/lumi", "storage_options": options}


@pytest.fixture
def name():
    """A store name no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kill_stores(ray_cluster):
    """Kills the store actors a test names in the list it gets, so each test's actors go with it."""
    names = []
    yield names
    for actor_name in names:
        with contextlib.suppress(ValueError):
            ray_cluster.kill(ray_cluster.get_actor(actor_name, namespace="lumi"), no_restart=True)
