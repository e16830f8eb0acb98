"""``%lumi dicts``, ``%lumi queues``, ``%lumi volumes``: DataFrames of what the store holds."""

from __future__ import annotations

import lumi
import numpy as np


def test_the_views_list_every_store_with_its_size(shell, name, tmp_path, monkeypatch, kill_stores):
    monkeypatch.setenv("LUMI_STORE", str(tmp_path / "store"))
    d = lumi.Dict(name)
    kill_stores += [f"lumi-dict:local:{name}", f"lumi-queue:local:{name}"]
    d["a"], d["b"] = np.zeros(100, np.float32), "x"
    lumi.Queue(name, maxsize=7).put_many([1, 2, 3])
    vol = lumi.Volume(name)
    vol.write_bytes("f.bin", b"1234")
    vol.write_bytes("sub/g.bin", b"12")
    lumi.Volume("empty", tenant="other")
    dicts = shell.run_line_magic("lumi", "dicts")
    assert list(dicts.columns) == ["name", "tenant", "keys", "bytes"]
    assert dicts.to_dict("records")[0]["name"] == name and dicts["keys"].tolist() == [2] and dicts["bytes"][0] > 400
    queues = shell.run_line_magic("lumi", "queues")
    assert queues[["name", "tenant", "length", "maxsize"]].values.tolist() == [[name, "local", 3, 7]]
    volumes = shell.run_line_magic("lumi", "volumes")
    assert volumes[["name", "tenant", "files", "bytes"]].values.tolist() == [[name, "local", 2, 6],
                                                                             ["empty", "other", 0, 0]]
    assert shell.run_line_magic("lumi", "volumes --tenant other")["name"].tolist() == ["empty"]
    assert shell.run_line_magic("lumi", "dicts --tenant nobody").empty
