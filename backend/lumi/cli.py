"""The ``lumi`` command: deploy exported graphs and manage endpoints without a notebook.

Talks to the gateway named by ``--url``/``--key``, ``$LUMI_GATEWAY_URL``/``$LUMI_KEY``, or
``$LUMI_HOME/gateway.json`` (written by whichever process started it: a notebook, or ``lumi serve``).
"""

from __future__ import annotations

import argparse
import json
import sys

import httpx

from .errors import LumiError
from .runtime.config import setting
from .runtime.options import add_placement_arguments


def _gateway(args) -> tuple[str, str]:
    from .serving.gateway import gateway_file, gateway_info

    url = args.url or setting("LUMI_GATEWAY_URL")
    key = args.key or setting("LUMI_KEY")
    if url and key:
        return url.rstrip("/"), key
    info = gateway_info()
    if info is None:
        raise LumiError(f"no gateway answers (looked in {gateway_file()}); start one with `lumi serve` or run "
                        "%%deploy in a notebook, or pass --url and --key")
    return (url or info["url"]).rstrip("/"), key or info["key"]


def _request(args, method: str, path: str, **kw) -> dict | list:
    from .serving.endpoint import raise_for

    url, key = _gateway(args)
    r = httpx.request(method, f"{url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=120, **kw)
    return raise_for(r).json()


def cmd_deploy(args) -> None:
    from .onnx import read_graph
    from .runtime.options import check_endpoint_tenant, gpu_wire
    from .serving import keys
    from .serving.endpoint import deploy

    gpu = gpu_wire(args.gpu)  # malformed placement options are refused before the file is read
    graph = read_graph(args.file)
    url, key = _gateway(args)
    if args.tenant is not None:
        principal = keys.Keyring(keys.keys_path()).lookup(key)
        check_endpoint_tenant(args.tenant, principal.tenant if principal else None, how=", then --key KEY")
    info = deploy(graph, args.name, url, key, gpu=gpu, min_replicas=args.min_replicas,
                  max_replicas=args.max_replicas, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                  scaledown_window=args.scaledown_window, tier=args.tier)
    batching = "on" if info["batching"] else f"off ({info['batching_reason']})"
    print(f"deployed {args.name} version {info['version']} (sha256 {info['sha256'][:12]}), batching {batching}")
    print(f"URL: {info['url']}")


def cmd_endpoints(args) -> None:
    rows = _request(args, "GET", "/v1/endpoints")
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'NAME':<20} {'VERSION':>7} {'VERSIONS':>8} {'REPLICAS':>8} {'REQUESTS':>8}  URL")
    for r in rows:
        print(f"{r['name']:<20} {r['active_version']:>7} {len(r['versions']):>8} {r['replicas']:>8} "
              f"{r['requests']:>8}  {r['url']}")


def cmd_show(args) -> None:
    print(json.dumps(_request(args, "GET", f"/v1/endpoints/{args.name}"), indent=1))


def cmd_rollback(args) -> None:
    body = {} if args.version is None else {"version": args.version}
    r = _request(args, "POST", f"/v1/endpoints/{args.name}/rollback", json=body)
    print(f"{args.name}: version {r['active_version']} is active")


def cmd_scale(args) -> None:
    r = _request(args, "POST", f"/v1/endpoints/{args.name}/scale", json={"replicas": args.replicas})
    print(f"{args.name}: {r['replicas']} replicas")


def cmd_delete(args) -> None:
    _request(args, "DELETE", f"/v1/endpoints/{args.name}")
    print(f"deleted {args.name}")


def cmd_keys(args) -> None:
    """``lumi keys create|list|revoke|rotate|show``: keys are stored as hashes, so a new key is shown only here
    (``show`` prints the local admin key, which ``$LUMI_HOME/admin.key`` keeps for this machine's tools)."""
    import time

    from .serving import keys

    if args.action == "show":
        print(keys.admin_key())
        return
    if args.action == "list":
        print(f"{'PREFIX':<14} {'TENANT':<16} {'TIER':<11} {'ADMIN':<6} CREATED")
        for k in keys.list_keys():
            print(f"{k.prefix:<14} {k.tenant:<16} {k.tier:<11} {'yes' if k.admin else 'no':<6} "
                  f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(k.created_at)) if k.created_at else '-'}")
        return
    if not args.target:
        raise LumiError(f"lumi keys {args.action} needs a {'TENANT' if args.action == 'create' else 'PREFIX'}")
    if args.action == "revoke":
        k = keys.revoke_key(args.target)
        print(f"revoked {k.prefix} (tenant {k.tenant}, tier {k.tier})")
        return
    key = keys.add_key(args.target, args.tier, admin=args.admin) if args.action == "create" else \
        keys.rotate_key(args.target)
    print(f"{key}\n(shown once: only its hash is kept in {keys.keys_path().name}; store it now)")


def cmd_serve(args) -> None:
    """Start the local backend (or join it when it runs), or with --address start a gateway in that cluster."""
    if args.address:
        from .runtime.cluster import connect
        from .serving.gateway import ensure_gateway

        connect(args.address)
        where, url = args.address, ensure_gateway()["url"]
    else:
        from .runtime.head import ensure_head, record_path

        record = ensure_head()
        where, url = f"{record['address']} (recorded in {record_path()})", record["gateway"]
    print(f"Lumi backend: Ray at {where}, gateway at {url}. It keeps running; `lumi stop` stops it.")


def cmd_stop(args) -> None:
    from .runtime.head import record_path, stop_head

    record = stop_head()
    print(f"stopped the Lumi backend at {record['address']}" if record else f"no Lumi backend runs ({record_path()})")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lumi", description="Deploy Lumi graphs and manage their endpoints.")
    p.add_argument("--url", help="gateway URL (default: $LUMI_GATEWAY_URL or $LUMI_HOME/gateway.json)")
    p.add_argument("--key", help="API key (default: $LUMI_KEY or the local admin key)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("deploy", help="deploy a .lumi file or an ONNX model as a new version of an endpoint")
    d.add_argument("file", help="a .lumi file written by Graph.export, or an .onnx model (imported by lumi.from_onnx)")
    d.add_argument("--name", required=True, help="endpoint name")
    d.add_argument("--min-replicas", type=int, default=None, help="replicas kept warm (default 0)")
    d.add_argument("--max-replicas", type=int, default=None, help="most replicas (default 4)")
    d.add_argument("--max-batch", type=int, default=None, help="most rows per batch (default 32)")
    d.add_argument("--max-wait-ms", type=float, default=None, help="batch wait in ms (default 5)")
    d.add_argument("--scaledown-window", type=float, default=None, help="idle seconds before scaling down (60)")
    add_placement_arguments(d)
    d.set_defaults(fn=cmd_deploy)

    e = sub.add_parser("endpoints", help="list endpoints")
    e.add_argument("--json", action="store_true", help="print the gateway's JSON")
    e.set_defaults(fn=cmd_endpoints)
    s = sub.add_parser("show", help="one endpoint as JSON")
    s.add_argument("name")
    s.set_defaults(fn=cmd_show)
    r = sub.add_parser("rollback", help="make an earlier version active (default: the previous one)")
    r.add_argument("name")
    r.add_argument("--version", type=int, default=None)
    r.set_defaults(fn=cmd_rollback)
    c = sub.add_parser("scale", help="set an endpoint's replica count now")
    c.add_argument("name")
    c.add_argument("replicas", type=int)
    c.set_defaults(fn=cmd_scale)
    x = sub.add_parser("delete", help="delete an endpoint (its stored versions stay)")
    x.add_argument("name")
    x.set_defaults(fn=cmd_delete)
    k = sub.add_parser("keys", help="API keys: create TENANT [--tier T --admin], list, revoke PREFIX, rotate PREFIX, "
                       "show (the local admin key)")
    k.add_argument("action", choices=["create", "list", "revoke", "rotate", "show"])
    k.add_argument("target", nargs="?", help="a tenant (create) or a key's prefix (revoke, rotate)")
    k.add_argument("--tier", default="api", help="the most this key's work may use (create)")
    k.add_argument("--admin", action="store_true", help="an admin key: every tenant, any tier, no quotas")
    k.set_defaults(fn=cmd_keys)
    v = sub.add_parser("serve", help="start the local backend (Ray head, dispatcher, gateway) in the background")
    v.add_argument("--address", default=None, help="start only a gateway, in the Ray cluster at this address")
    v.set_defaults(fn=cmd_serve)
    t = sub.add_parser("stop", help="stop the local backend that `lumi serve` or a notebook started")
    t.set_defaults(fn=cmd_stop)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.fn(args)
    except LumiError as e:
        print(f"lumi: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
