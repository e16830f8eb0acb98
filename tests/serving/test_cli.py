"""The ``lumi`` console script against the running gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import lumi
import numpy as np
import pytest


def _lumi(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lumi.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_cli_deploys_an_exported_file(gateway, tmp_path):
    assert "deploy" in _lumi("--help").stdout
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    path = tmp_path / "model.lumi"
    lumi.trace(lambda x: x @ w, lumi.spec(("batch", 4))).export(path)
    r = _lumi("deploy", str(path), "--name", "from-cli", "--max-batch", "8", "--scaledown-window", "5")
    assert r.returncode == 0, r.stderr
    assert "deployed from-cli version 1" in r.stdout and "batching on" in r.stdout
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(lumi.Endpoint("from-cli")(x), x @ w)
    listed = json.loads(_lumi("endpoints", "--json").stdout)
    assert "from-cli" in [e["name"] for e in listed]
    r = _lumi("rollback", "from-cli")
    assert r.returncode == 1 and "no version before 1" in r.stderr
    assert _lumi("delete", "from-cli").returncode == 0
    assert "from-cli" not in _lumi("endpoints").stdout


def test_cli_keys_create_list_rotate_revoke(tmp_path):
    env = {**os.environ, "LUMI_HOME": str(tmp_path)}

    def keys(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lumi.cli", "keys", *args], capture_output=True, text=True,
                              timeout=60, env=env)

    key = keys("create", "acme", "--tier", "free").stdout.split()[0]
    assert key.startswith("lumi_") and key not in (tmp_path / "keys.toml").read_text()
    listed = keys("list").stdout
    assert key[:13] in listed and "acme" in listed and "free" in listed and key not in listed
    new = keys("rotate", key[:13]).stdout.split()[0]
    assert new != key and new[:13] in keys("list").stdout and key[:13] not in keys("list").stdout
    assert "revoked" in keys("revoke", new[:13]).stdout and new[:13] not in keys("list").stdout
    admin = keys("show").stdout.strip()
    assert admin == (tmp_path / "admin.key").read_text() and admin == keys("show").stdout.strip()
    r = keys("revoke", "lumi_nothere")
    assert r.returncode == 1 and "no key with prefix" in r.stderr
