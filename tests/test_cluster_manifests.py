"""The cluster manifests in backend/cluster/ are valid and agree with Lumi: the cluster launcher config against
Ray's own schema (ray/autoscaler/ray-schema.json), the KubeRay RayCluster against a schema of the fields it
uses, and in both the burst group's node label is the one the head's LUMI_BURST_POOL names."""

from __future__ import annotations

import json
import pathlib
import re

import jsonschema
import ray
import yaml
from lumi.runtime.pool import BurstGroup

CLUSTER = pathlib.Path(__file__).parent.parent / "backend" / "cluster"
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
CONTAINER = {"type": "object", "required": ["name", "image"], "properties": {
    "name": {"type": "string"}, "image": {"type": "string", "pattern": r"^[\w./-]+:[\w.-]+$"},
    "env": {"type": "array", "items": {"type": "object", "required": ["name", "value"],
                                       "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}},
    "resources": {"type": "object", "properties": {"requests": {"type": "object"}, "limits": {"type": "object"}}}}}
POD = {"type": "object", "required": ["spec"], "properties": {"spec": {
    "type": "object", "required": ["containers"],
    "properties": {"containers": {"type": "array", "minItems": 1, "items": CONTAINER},
                   "nodeSelector": STRINGS, "tolerations": {"type": "array"}}}}}
RAY_CLUSTER = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayCluster"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {"type": "object", "required": ["rayVersion", "headGroupSpec", "workerGroupSpecs"], "properties": {
            "rayVersion": {"type": "string"}, "enableInTreeAutoscaling": {"type": "boolean"},
            "headGroupSpec": {"type": "object", "required": ["rayStartParams", "template"],
                              "properties": {"rayStartParams": STRINGS, "template": POD}},
            "workerGroupSpecs": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"],
                "properties": {"groupName": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                               "replicas": {"type": "integer", "minimum": 0},
                               "minReplicas": {"type": "integer", "minimum": 0},
                               "maxReplicas": {"type": "integer", "minimum": 1},
                               "rayStartParams": STRINGS, "template": POD}}}}}}}


def test_the_cluster_launcher_config_passes_rays_own_schema():
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    schema = json.loads((pathlib.Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    burst = BurstGroup.parse(re.search(r"LUMI_BURST_POOL=(\S+)", " ".join(config["head_start_ray_commands"]))[1])
    labelled = [name for name, node in config["available_node_types"].items()
                if (node.get("labels") or {}).get(burst.key) == burst.value]
    assert labelled == ["gpu-burst"]
    assert config["available_node_types"]["gpu-burst"]["min_workers"] == 0  # borrowed only while needed


def test_the_kuberay_cluster_has_a_burst_group_the_head_names():
    documents = list(yaml.safe_load_all((CLUSTER / "kuberay-cluster.yaml").read_text()))
    (cluster,) = [d for d in documents if d["kind"] == "RayCluster"]
    jsonschema.validate(cluster, RAY_CLUSTER)
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in head["env"]}
    burst = BurstGroup.parse(env["LUMI_BURST_POOL"])
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    labelled = [name for name, g in groups.items() if g["rayStartParams"].get("labels") == f"{burst.key}={burst.value}"]
    assert labelled == ["gpu-burst"] and groups["gpu-burst"]["minReplicas"] == 0
    images = {c["image"] for g in groups.values() for c in g["template"]["spec"]["containers"]}
    assert images == {head["image"]}  # one image: the same Lumi and Ray everywhere
    (service,) = [d for d in documents if d["kind"] == "Service"]
    assert service["spec"]["ports"][0]["port"] == int(env["LUMI_GATEWAY_PORT"])
