"""``edgesmith device``: the user's own devices over SSH (add, list, show, remove, probe, setup)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgesmith.cli.app import app
from edgesmith.cli.common import RichReporter, guarded
from edgesmith.terminal import say

device_app = typer.Typer(
    help="Devices over SSH: measure and validate on the real device from this machine "
    "(`bench/compare/validate --on NAME`, `optimize/search --device NAME`).\n\n"
    "Examples:\n\n"
    "  edgesmith device add pi ssh://pi@192.168.1.20 --accept-host-key\n\n"
    "  edgesmith device setup pi && edgesmith device probe pi\n\n"
    "  edgesmith bench model.onnx --on pi",
    no_args_is_help=True,
)
app.add_typer(device_app, name="device")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The device's name (letters, digits, '.', '_', '-').")]


@device_app.command("add")
@guarded
def device_add(
    name: NameArg,
    url: Annotated[str, typer.Argument(metavar="URL", help="ssh://user@host[:port]")],
    key: Annotated[Path | None, typer.Option("--key", help="Private key file (default: the SSH agent and ~/.ssh's keys).")] = None,
    python: Annotated[str, typer.Option("--python", help="The device's Python 3.10+ (a name on its PATH or a path).")] = "python3",
    workdir: Annotated[
        str | None, typer.Option("--workdir", help="edgesmith's folder on the device (default ~/.cache/edgesmith-device): uploads, cache, installs.")
    ] = None,
    accept_host_key: Annotated[
        bool, typer.Option("--accept-host-key", help="Pin the key the device presents now (check its fingerprint first). Never done silently.")
    ] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a device of this name.")] = False,
) -> None:
    """Add a device: pin its host key (only with --accept-host-key), log in, probe it. Strict host-key
    checking on every later connection: a changed key is refused.

    Example: edgesmith device add pi ssh://pi@192.168.1.20 --key ~/.ssh/id_ed25519 --accept-host-key
    """
    from edgesmith.remote import client

    device, facts = client.add(name, url, key=key, python=python, workdir=workdir, accept_host_key=accept_host_key, replace=replace, reporter=RichReporter())
    say(f"device {name} added: {device.url}, {_facts_line(facts)}")
    if not facts.get("versions", {}).get("onnxruntime") and not facts.get("versions", {}).get("openvino"):
        say(f"no runtime there yet: edgesmith device setup {name}")


def _facts_line(facts: dict) -> str:
    mem = facts.get("memory_bytes")
    return ", ".join(
        str(x)
        for x in (
            facts.get("arch"),
            f"{facts.get('cores')} cores",
            f"{mem / 2**30:.1f} GiB" if mem else None,
            facts.get("os"),
            f"Python {facts.get('python_version')}",
            f"work folder {facts.get('work')}",
        )
        if x
    )


@device_app.command("list")
@guarded
def device_list(json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the devices added.  Example: edgesmith device list"""
    from dataclasses import asdict

    from edgesmith.remote.config import Registry

    devices = Registry().load()
    if json_out:
        print(json.dumps({n: asdict(d) for n, d in devices.items()}, indent=2, default=str))
        return
    if not devices:
        say("no devices yet: edgesmith device add NAME ssh://user@host --accept-host-key")
        return
    for n, d in sorted(devices.items()):
        setup = "set up" if d.setup else "not set up"
        say(f"{n}  {d.url}  {d.arch or '?'}  {d.facts.get('cores', '?')} cores  {setup}  profile: {d.profile or '-'}")


@device_app.command("show")
@guarded
def device_show(name: NameArg) -> None:
    """Show one device: address, pinned host key, facts, profile, setup.  Example: edgesmith device show pi"""
    from dataclasses import asdict

    import yaml

    from edgesmith.remote.config import Registry, pinned_keys
    from edgesmith.remote.session import fingerprint

    d = Registry().get(name)
    data = {"url": d.url, "host_key": [fingerprint(k) for k in pinned_keys(d.host, d.port)] or "not pinned", **asdict(d)}
    print(yaml.safe_dump(data, sort_keys=False), end="")


@device_app.command("remove")
@guarded
def device_remove(name: NameArg) -> None:
    """Forget a device (its pinned host key too, unless another device uses that address).  Example: edgesmith device remove pi"""
    from edgesmith.remote.config import Registry, unpin_key

    reg = Registry()
    d = reg.remove(name)
    if not any((o.host, o.port) == (d.host, d.port) for o in reg.load().values()):
        unpin_key(d.host, d.port)
    say(f"device {name} removed (nothing on the device was touched; its files are in {d.work or d.workdir} there)")


@device_app.command("probe")
@guarded
def device_probe(
    name: NameArg,
    backend: Annotated[str, typer.Option(help="Runtime the profile targets: onnxruntime or openvino.")] = "onnxruntime",
    no_benchmark: Annotated[bool, typer.Option("--no-benchmark", help="Skip the short INT8 benchmark on the device.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the facts as JSON.")] = False,
) -> None:
    """Probe a device: CPU features, cores, memory, OS, runtime versions; once it is set up, also write a
    profile for it (as `profiles init` does locally, run there) to use with -t.

    Example: edgesmith device probe pi && edgesmith quantize MODEL -t ~/.config/edgesmith/profiles/pi.yaml
    """
    from edgesmith.remote import client

    device, facts, path = client.probe(name, backend=backend, benchmark=not no_benchmark, reporter=RichReporter())
    if json_out:
        print(json.dumps({"facts": facts, "profile": str(path) if path else None}, indent=2))
        return
    say(f"{name}: {_facts_line(facts)}")
    say(f"runtimes: {', '.join(f'{k} {v}' for k, v in facts.get('versions', {}).items()) or 'none'}")
    say(f"profile written to {path}" if path else f"no profile yet (the device lacks {backend} or edgesmith's core): edgesmith device setup {name}")


@device_app.command("setup")
@guarded
def device_setup(
    name: NameArg,
    runtime: Annotated[str, typer.Option(help="onnxruntime or openvino.")] = "onnxruntime",
) -> None:
    """Install edgesmith's torch-free side on a device: its package, plus what the device lacks of the
    core and the runtime, from wheels this machine fetches for the device's platform (the device needs no
    internet access and no pip).

    Example: edgesmith device setup pi --runtime onnxruntime
    """
    from edgesmith.remote import client

    done = client.setup(name, runtime, reporter=RichReporter())
    installed = ", ".join(done["installed"]) or "nothing (all there)"
    say(f"device {name} is set up for {runtime}: installed {installed}")
    say("versions there: " + ", ".join(f"{k} {v}" for k, v in done["versions"].items()))
