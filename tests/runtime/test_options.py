"""``--gpu``, ``--tier`` and ``--tenant`` take the same forms with the same defaults in ``%%remote``,
``%%deploy``, ``lumi deploy`` and ``lumi.submit`` (no cluster needed: parsers and specs only)."""

from __future__ import annotations

import importlib
import inspect
import shlex

import lumi
import pytest
from IPython.core.magic_arguments import parse_argstring
from lumi import cli
from lumi.errors import LumiError
from lumi.runtime import jobs
from lumi.runtime.options import (
    PLACEMENT_ARGUMENTS,
    GpuRequest,
    check_endpoint_tenant,
    gpu_wire,
    job_placement,
)

remote = importlib.import_module("lumi_magics.remote")
deploy = importlib.import_module("lumi_magics.deploy")
magic_options = importlib.import_module("lumi_magics.options")

CANONICAL = [
    (True, "any", None, 1),
    ("any", "any", None, 1),
    ("ANY", "any", None, 1),
    ("H100", "H100", "H100", 1),
    ("h100", "H100", "H100", 1),
    ("H100:1", "H100", "H100", 1),
    ("H100:2", "H100:2", "H100", 2),
    ("any:2", "any:2", None, 2),
    ("2", "any:2", None, 2),
    (" a100-sxm4 ", "A100-SXM4", "A100-SXM4", 1),
    ("RTX 4090:1", "RTX 4090", "RTX 4090", 1),
    ("'RTX 4090'", "RTX 4090", "RTX 4090", 1),
    ('"H100:2"', "H100:2", "H100", 2),
]
INVALID = ["4090", "H100:0", "H100:x", "H100:", "a:b:c", "H1$00", "a;b", "H100/2", ":2", "0", "4090:2", "H100:2000",
           "x" * 30]


@pytest.mark.parametrize(("value", "wire", "kind", "count"), CANONICAL)
def test_gpu_forms_parse_to_one_canonical_form(value, wire, kind, count):
    gpu = GpuRequest.parse(value)
    assert (gpu.kind, gpu.count, str(gpu)) == (kind, count, wire)
    assert GpuRequest.parse(str(gpu)) == gpu and GpuRequest.parse(gpu) is gpu
    assert gpu_wire(value) == wire


@pytest.mark.parametrize("value", [None, False, "", "  "])
def test_no_gpu_asked_for(value):
    assert GpuRequest.parse(value) is None and gpu_wire(value) is None


@pytest.mark.parametrize("value", INVALID)
def test_malformed_gpu_forms_say_which_forms_there_are(value):
    with pytest.raises(LumiError, match=r"The forms are --gpu alone \(any GPU\), --gpu H100 .*--gpu 2"):
        GpuRequest.parse(value)


def test_a_count_is_positive():
    with pytest.raises(LumiError, match="1 to"):
        GpuRequest("H100", 0)
    assert str(GpuRequest(None, 3)) == "any:3" and GpuRequest.parse(4) == GpuRequest(None, 4)


def test_matching_is_by_case_insensitive_substring_of_the_device_name():
    assert GpuRequest.parse("h100").matches("NVIDIA H100 80GB HBM3")
    assert not GpuRequest.parse("A100").matches("NVIDIA H100 80GB HBM3")
    assert GpuRequest.parse(True).matches("NVIDIA H100 80GB HBM3") and GpuRequest.parse("any:2").matches("Tesla T4")
    assert GpuRequest.parse("RTX 4090").matches("NVIDIA GeForce RTX 4090")


def test_the_shared_declarations():
    flags = [f for f, _ in PLACEMENT_ARGUMENTS]
    assert flags == [("--gpu",), ("--tier",), ("--tenant",)]
    gpu = PLACEMENT_ARGUMENTS[0][1]
    assert (gpu["nargs"], gpu["const"], gpu["default"], gpu["metavar"]) == ("?", "any", None, "TYPE[:N]")
    assert all(kw["default"] is None and kw["help"] for _, kw in PLACEMENT_ARGUMENTS)


def _remote(line):
    return parse_argstring(remote.remote, line)


def _deploy(line):
    return parse_argstring(deploy.deploy, "mlp " + line)


def _cli(line):
    return cli._parser().parse_args(["deploy", "m.lumi", "--name", "mlp", *shlex.split(line)])


PARSERS = {"%%remote": _remote, "%%deploy": _deploy, "lumi deploy": _cli}
LINES = {
    "": (None, None, None),
    "--gpu": ("any", None, None),
    "--gpu H100": ("H100", None, None),
    "--gpu H100:2": ("H100:2", None, None),
    "--gpu 2": ("2", None, None),
    "--gpu any:2 --tier free --tenant acme": ("any:2", "free", "acme"),
    "--tier enterprise --gpu": ("any", "enterprise", None),
    "--gpu 'RTX 4090'": ("RTX 4090", None, None),
}


@pytest.mark.parametrize("where", sorted(PARSERS))
@pytest.mark.parametrize("line", sorted(LINES))
def test_every_parser_takes_the_same_forms_with_the_same_defaults(where, line):
    args = PARSERS[where](line)
    gpu, tier, tenant = LINES[line]
    assert (gpu_wire(args.gpu), args.tier, args.tenant) == (gpu_wire(gpu), tier, tenant)
    assert args.gpu == gpu or where == "%%remote" or where == "%%deploy"  # magic lines keep quotes: parse drops them


def test_every_parser_declares_them_alike():
    parsers = {"%%remote": remote.remote.parser, "%%deploy": deploy.deploy.parser,
               "lumi deploy": cli._parser()._subparsers._group_actions[0].choices["deploy"]}
    declared = {}
    for where, parser in parsers.items():
        actions = {a.dest: a for a in parser._actions}
        declared[where] = {d: (actions[d].option_strings, actions[d].nargs, actions[d].const, actions[d].default,
                               actions[d].metavar, actions[d].help) for d in ("gpu", "tier", "tenant")}
    assert declared["%%remote"] == declared["%%deploy"] == declared["lumi deploy"]


def test_magic_help_shows_them_in_the_declared_order():
    for fn in (remote.remote, deploy.deploy):
        doc = " ".join(fn.__doc__.split())
        assert doc.index("[--gpu [TYPE[:N]]]") < doc.index("[--tier TIER]") < doc.index("[--tenant TENANT]")
        assert "--gpu alone any GPU" in doc and "Default: your key's tier" in doc
        assert "Default: your key's tenant" in doc


def test_job_specs_carry_the_canonical_form_and_the_keyless_defaults():
    assert job_placement() == {"gpu": None, "tier": "api", "tenant": "local"}
    assert job_placement("h100:1", "free", "acme") == {"gpu": "H100", "tier": "free", "tenant": "acme"}
    spec = jobs._spec("graph", None, [], key="k", work={}, gpu=True)
    assert (spec["gpu"], spec["tier"], spec["tenant"]) == ("any", "api", "local")
    assert jobs._spec("graph", None, [], key="k", work={}, gpu="2")["gpu"] == "any:2"
    assert jobs._placed({"gpu": "H100:2", "label": "x"}) == {"gpu": "H100:2", "tier": "api", "tenant": "local",
                                                             "label": "x"}
    with pytest.raises(LumiError, match="The forms are"):
        jobs._placed({"gpu": "H100:0"})
    defaults = {k: p.default for k, p in inspect.signature(lumi.submit).parameters.items()}
    assert (defaults["gpu"], defaults["tier"], defaults["tenant"]) == (None, None, None)


def test_malformed_gpu_is_refused_before_anything_runs(capsys, tmp_path):
    with pytest.raises(LumiError, match="The forms are"):
        remote.remote("--gpu H100:0", "y = 1", shell=None)  # before the backend starts: shell is not needed
    with pytest.raises(LumiError, match="The forms are"):
        deploy.deploy("mlp --gpu a:b:c", "def f(x):\n    return x", shell=None)
    assert cli.main(["deploy", str(tmp_path / "missing.lumi"), "--name", "m", "--gpu", "H100:x"]) == 1
    assert "--gpu H100:x" in capsys.readouterr().err


def test_notebook_defaults_are_the_local_keys(monkeypatch, tmp_path):
    monkeypatch.setenv("LUMI_HOME", str(tmp_path))
    assert magic_options.notebook_placement(None, None) == ("api", "local")  # the local admin key's
    assert magic_options.notebook_placement("free", None) == ("free", "local")
    assert magic_options.notebook_placement(None, "acme") == ("api", "acme")
    from lumi.serving import keys

    assert magic_options.key_principal(keys.admin_key()).tenant == "local"
    assert magic_options.key_principal("lumi_nothere_x") is None


def test_an_endpoint_belongs_to_its_keys_tenant():
    check_endpoint_tenant(None, "local")
    check_endpoint_tenant("local", "local")
    with pytest.raises(LumiError, match="this key's tenant is 'local'.*lumi keys create acme"):
        check_endpoint_tenant("acme", "local")
    with pytest.raises(LumiError, match="cannot be checked here"):
        check_endpoint_tenant("acme", None)


def test_cli_deploy_refuses_another_tenant_before_uploading(monkeypatch, tmp_path, capsys):
    import numpy as np
    from lumi.serving import keys

    monkeypatch.setenv("LUMI_HOME", str(tmp_path))
    key = keys.add_key("acme", "free")
    path = tmp_path / "m.lumi"
    lumi.trace(lambda x: x * 2, lumi.spec(("batch", 3), np.float32)).export(path)
    # nothing listens at this URL: the refusal comes before any request
    argv = ["--url", "http://127.0.0.1:9", "--key", key, "deploy", str(path), "--name", "m", "--tenant", "bob"]
    assert cli.main(argv) == 1
    assert "this key's tenant is 'acme'" in capsys.readouterr().err
