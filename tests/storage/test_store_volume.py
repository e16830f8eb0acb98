"""lumi.Volume on a local folder and on s3:// (a local S3 server): driver and worker share files."""

from __future__ import annotations

import os
from pathlib import Path

import lumi
import pytest
import ray
from lumi.storage import InvalidName, PathNotFound, StoreNotFound


@ray.remote(num_cpus=0)
def _worker_side(volume) -> dict:
    path = volume.local_path("data/weights.bin")
    with open(path, "rb") as f:
        weights = f.read()
    volume.write_text("out/result.txt", f"read {len(weights)} bytes")
    volume.write_bytes("out/raw.bin", weights[::-1])
    return {"path": path, "config": volume.read_text("config.json"), "listing": volume.listdir("data")}


def test_a_worker_reads_and_writes_the_notebooks_files(ray_cluster, name, root, tmp_path):
    vol = lumi.Volume(name, **root)
    local = tmp_path / "weights.bin"
    local.write_bytes(bytes(range(256)) * 4)
    assert vol.put(local, "data/weights.bin") == "data/weights.bin"
    vol.write_text("config.json", '{"lr": 0.1}')
    seen = ray.get(_worker_side.remote(vol), timeout=120)
    assert seen["config"] == '{"lr": 0.1}' and seen["listing"] == ["weights.bin"]
    assert os.path.isfile(seen["path"])
    if root["root"].startswith("s3://"):  # a cached copy
        assert "cache/volumes" in seen["path"]
    assert vol.read_text("out/result.txt") == "read 1024 bytes"
    assert vol.read_bytes("out/raw.bin") == local.read_bytes()[::-1]
    assert vol.listdir() == ["config.json", "data/", "out/"]
    got = vol.get("out/raw.bin", tmp_path / "raw.bin")
    assert Path(got).read_bytes() == local.read_bytes()[::-1]
    assert vol.get("config.json", tmp_path) == str(tmp_path / "config.json")


def test_folders_remove_and_the_local_cache(ray_cluster, name, root, tmp_path):
    vol = lumi.Volume(name, **root)
    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    vol.put(folder)
    assert vol.listdir("ckpt") == ["a.txt", "sub/"] and vol.read_text("ckpt/sub/b.txt") == "b"
    first = vol.local_path("ckpt/a.txt")
    vol.write_text("ckpt/a.txt", "changed")
    second = vol.local_path("ckpt/a.txt")
    assert Path(second).read_text() == "changed"  # a remote file that changed is fetched again
    assert (first == second) == (not root["root"].startswith("s3://"))
    with pytest.raises(InvalidName, match="is a folder"):
        vol.remove("ckpt")
    vol.remove("ckpt/a.txt")
    assert not vol.exists("ckpt/a.txt") and vol.exists("ckpt/sub/b.txt")
    vol.remove("ckpt", recursive=True)
    assert vol.listdir() == []
    again = lumi.Volume(name, create=False, **root)
    assert again.listdir() == []


def test_missing_paths_and_bad_paths(ray_cluster, name, root, tmp_path):
    with pytest.raises(StoreNotFound, match=f"no Volume named {name!r}"):
        lumi.Volume(name, create=False, **root)
    vol = lumi.Volume(name, **root)
    for action in (lambda: vol.read_bytes("nope.txt"), lambda: vol.local_path("nope.txt"),
                   lambda: vol.get("nope.txt", tmp_path / "x"), lambda: vol.remove("nope.txt")):
        with pytest.raises(PathNotFound, match=f"Volume {name!r} has no file 'nope.txt'") as e:
            action()
        assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(PathNotFound, match="no folder 'nowhere'"):
        vol.listdir("nowhere")
    with pytest.raises(PathNotFound, match="no local file or folder"):
        vol.put(tmp_path / "absent")
    for bad in ("/etc/passwd", "../x", "a/../../x", "a\\b", ""):
        with pytest.raises(InvalidName):
            vol.write_bytes(bad, b"x")
    vol.write_bytes("a/../b.txt", b"ok")  # stays inside: it is b.txt
    assert vol.listdir() == ["b.txt"]
