"""Where work runs and who it is for: ``--gpu``, ``--tier`` and ``--tenant``, declared once.

``%%remote``, ``%%deploy``, ``lumi deploy`` and ``lumi.submit`` take these in the same forms with the
same defaults:

- ``--gpu`` alone: any GPU; ``--gpu H100``: one GPU whose device name contains ``H100`` (any case);
  ``--gpu H100:2``: two of them; ``--gpu 2``: two GPUs of any type. Not given: no GPU asked for.
  :class:`GpuRequest` parses these; ``str()`` of one is the canonical form that job specs and
  the gateway's ``PUT /v1/endpoints/{name}?gpu=`` carry (``any``, ``H100``, ``H100:2``, ``any:2``).
- ``--tier`` not given: the tier of your key (in a notebook, this machine's local admin key, whose
  tier is ``api``); ``api`` where no key is involved (``lumi.submit``).
- ``--tenant`` not given: your key's tenant (``local`` on the embedded backend: the local admin
  key's); ``local`` where no key is involved. An endpoint belongs to the tenant of the key that
  deploys it, so there ``--tenant`` may only name that tenant.

The runtime layer never imports IPython: the notebook turns :data:`PLACEMENT_ARGUMENTS` into magic
arguments in ``lumi_magics/options.py``; argparse parsers use :func:`add_placement_arguments`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import LumiError
from .config import DEFAULT_TIERS, LOCAL_TENANT

DEFAULT_TIER = "api"  # the tier where no key says otherwise (the local admin key's too)
ANY = "any"
MAX_GPUS = 1024
_KIND = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._ -]{0,22}[A-Za-z0-9])?$")
FORMS = ("--gpu alone (any GPU), --gpu H100 (one GPU whose name contains H100, any case), --gpu H100:2 (two of "
         "them), --gpu 2 (two of any type); from Python gpu=True, 'H100', 'H100:2' or 'any:2'")


@dataclass(frozen=True)
class GpuRequest:
    """GPUs asked for: ``kind`` a substring of the device name (None: any GPU) and how many."""

    kind: str | None = None
    count: int = 1

    def __post_init__(self):
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not 1 <= self.count <= MAX_GPUS:
            raise LumiError(f"a GPU count is a whole number from 1 to {MAX_GPUS}, not {self.count!r}")

    @classmethod
    def parse(cls, value: str | bool | int | GpuRequest | None) -> GpuRequest | None:
        """``None``/``False``/``""``: no GPU asked for (None). ``True``/``"any"``: any GPU. ``"H100"``,
        ``"H100:2"``, ``"any:2"``, ``"2"`` (two of any type). Other forms raise :class:`LumiError`."""
        if isinstance(value, GpuRequest):
            return value
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, int):
            return cls(None, _count(value, str(value)))
        if not isinstance(value, str):
            raise LumiError(f"--gpu {value!r}: give a string; the forms are {FORMS}")
        text = value.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1].strip()  # IPython's magic lines keep the quotes of --gpu 'RTX 4090'
        if not text:
            return None
        kind, colon, count = text.partition(":")
        kind = kind.strip()
        if not colon and kind.isdigit():
            if not 1 <= int(kind) <= MAX_GPUS:
                raise _invalid(value, f"a number alone is a count of GPUs of any type, from 1 to {MAX_GPUS} (a "
                                      "type named by a number needs more of its name: 'RTX 4090')")
            return cls(None, int(kind))
        if ":" in count:
            raise _invalid(value, "at most one ':' (TYPE:N)")
        if colon and not kind:
            raise _invalid(value, "name a type before ':' (any:N for N of any type)")
        if kind.lower() == ANY:
            kind = None
        elif kind.isdigit():
            raise _invalid(value, "a GPU type is a name like H100, not a number (a count alone is --gpu N)")
        elif not _KIND.match(kind):
            raise _invalid(value, "a GPU type is up to 24 letters, digits, '.', '_', '-' or inner spaces, "
                                  "like H100 or A100-SXM4")
        return cls(kind.upper() if kind else None, _count(count.strip(), value) if colon else 1)

    def matches(self, device_name: str) -> bool:
        """Whether a device of this name is of the kind asked for (any GPU matches a kind of None)."""
        return self.kind is None or self.kind.upper() in device_name.upper()

    def __str__(self) -> str:
        kind = self.kind or ANY
        return kind if self.count == 1 else f"{kind}:{self.count}"


def _count(text, value) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        n = text
    elif isinstance(text, str) and text.isdigit():
        n = int(text)
    else:
        raise _invalid(value, f"the count after ':' is a whole number from 1 to {MAX_GPUS}")
    if not 1 <= n <= MAX_GPUS:
        raise _invalid(value, f"the count is a whole number from 1 to {MAX_GPUS}")
    return n


def _invalid(value, why: str) -> LumiError:
    return LumiError(f"--gpu {value}: {why}. The forms are {FORMS}")


def gpu_wire(value) -> str | None:
    """The canonical form of a ``--gpu`` value for a job spec or the gateway (None: no GPU asked for)."""
    gpu = GpuRequest.parse(value)
    return None if gpu is None else str(gpu)


GPU_HELP = ("GPUs to run on: --gpu alone any GPU, --gpu H100 one GPU whose device name contains H100 (any case), "
            "--gpu H100:2 two of them, --gpu 2 two of any type. Default: no GPU asked for (a job runs on any "
            "free worker, GPU or CPU fallback; an endpoint's replicas run on CPU)")
TIER_HELP = (f"dispatcher tier the work is admitted in ({', '.join(DEFAULT_TIERS)}, or a tier of config.toml). "
             f"Default: your key's tier (a notebook uses this machine's local key: {DEFAULT_TIER}); {DEFAULT_TIER} "
             "where no key is involved")
TENANT_HELP = (f"who the work belongs to and is billed to. Default: your key's tenant ({LOCAL_TENANT} on the "
               "embedded backend, whose key is this machine's local key). An endpoint belongs to the tenant of the "
               "key that deploys it: for a deploy, --tenant may only name that tenant")

PLACEMENT_ARGUMENTS: tuple[tuple[tuple[str, ...], dict], ...] = (
    (("--gpu",), dict(nargs="?", const=ANY, default=None, metavar="TYPE[:N]", help=GPU_HELP)),
    (("--tier",), dict(default=None, metavar="TIER", help=TIER_HELP)),
    (("--tenant",), dict(default=None, metavar="TENANT", help=TENANT_HELP)),
)


def add_placement_arguments(parser) -> None:
    """Add ``--gpu``, ``--tier`` and ``--tenant`` to an argparse parser (or argument group)."""
    for flags, kwargs in PLACEMENT_ARGUMENTS:
        parser.add_argument(*flags, **kwargs)


def job_placement(gpu=None, tier: str | None = None, tenant: str | None = None) -> dict:
    """``gpu``, ``tier`` and ``tenant`` of a job spec: the canonical GPU form, and the defaults where
    no key is involved (tier ``api``, tenant ``local``) for what is not given."""
    return {"gpu": gpu_wire(gpu), "tier": tier or DEFAULT_TIER, "tenant": tenant or LOCAL_TENANT}


def check_endpoint_tenant(tenant: str | None, key_tenant: str | None, how: str = "") -> None:
    """An endpoint belongs to the tenant of the key that deploys it: ``--tenant`` may only name that
    tenant (``key_tenant``, None when the key is not one of this machine's and its tenant is unknown)."""
    if tenant is None or tenant == key_tenant:
        return
    if key_tenant is None:
        raise LumiError(f"--tenant {tenant}: an endpoint belongs to the tenant of the key that deploys it, and this "
                        "key is not one of this machine's keys, so its tenant cannot be checked here; drop --tenant "
                        "to deploy as the key's own tenant")
    raise LumiError(f"--tenant {tenant}: an endpoint belongs to the tenant of the key that deploys it, and this key's "
                    f"tenant is {key_tenant!r}; deploy with a key of tenant {tenant!r} (`lumi keys create {tenant}`"
                    f"{how}) or drop --tenant")
