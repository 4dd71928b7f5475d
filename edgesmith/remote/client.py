"""What the commands do with a device: add, probe, set up, and measure there (``bench``, ``compare``,
``validate RUN_DIR``, the race of ``optimize`` and ``search``). Each opens one SSH session (``session.run``,
retried when the connection drops) and returns what the local command returns, marked with the device."""

from __future__ import annotations

import asyncio
import atexit
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgesmith.errors import ConfigError, DeviceError
from edgesmith.evaluate.judge import combine
from edgesmith.outputs import atomic_write_text, inside, load_manifest, manifest_digest, sha256
from edgesmith.profiles.schema import Profile
from edgesmith.progress import Reporter
from edgesmith.remote import scripts, session
from edgesmith.remote.config import Device, Registry, check_name, config_dir, parse_url, pin_key, pinned_keys
from edgesmith.report import md_row, md_table, verdict_rows
from edgesmith.runtime.compare import Comparison

CORE = {"numpy": "numpy", "onnx": "onnx", "yaml": "pyyaml", "pydantic": "pydantic", "typer": "typer", "rich": "rich"}
RUNTIMES = {
    "onnxruntime": {"onnxruntime": "onnxruntime", "onnxruntime_extensions": "onnxruntime-extensions"},
    "openvino": {"openvino": "openvino"},
}


def add(
    name: str,
    url: str,
    *,
    key: Path | None = None,
    python: str = "python3",
    workdir: str | None = None,
    accept_host_key: bool = False,
    replace: bool = False,
    reporter: Any = None,
) -> tuple[Device, dict]:
    """Register a device: its host key pinned (on first use only with ``accept_host_key``), a first login,
    its facts probed. Nothing is saved unless all of it worked."""

    rep = reporter or Reporter()
    user, host, port = parse_url(url)
    reg = Registry()
    if check_name(name) in reg.load() and not replace:
        raise ConfigError(f"a device named {name!r} exists", hint=f"remove it first, or add --replace: edgesmith device add {name} {url} --replace")
    device = Device(name=name, host=host, user=user, port=port, key=str(key.expanduser()) if key else None, python=python)
    if workdir:
        device.workdir = workdir
    if device.key:
        session.check_key(device)  # before the network: a wrong --key is named as such
    new_key = None
    if accept_host_key:
        new_key = asyncio.run(session.host_key(device))
        rep.info(f"[{name}] host key {session.fingerprint(new_key)} (pinned on your word: --accept-host-key)")
    elif not pinned_keys(host, port):
        shown = asyncio.run(session.host_key(device))
        raise DeviceError(
            f"the host key of {host}:{port} is not pinned yet; it presents {session.fingerprint(shown)}",
            hint=f"check that fingerprint on the device (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then: edgesmith device add {name} {url} --accept-host-key",
        )

    facts = _first_contact(device, new_key, rep)
    if new_key is not None:
        pin_key(host, port, new_key)
    device.facts = facts
    reg.put(device)
    return device, facts


def _first_contact(device: Device, new_key: str | None, rep: Any) -> dict:
    """Log in and probe, trusting ``new_key`` (being pinned) or the pinned key."""

    if new_key is None:

        async def job(s: session.Session) -> dict:
            return await s.probe()

        return session.run(device, job, rep)

    async def once() -> Any:
        conn = await session.connect(device, trust_key=new_key)
        try:
            return await session.Session(conn, device, rep).probe()
        finally:
            conn.close()

    return asyncio.run(once())


def probe(name: str, *, backend: str = "onnxruntime", benchmark: bool = True, reporter: Any = None) -> tuple[Device, dict, Path | None]:
    """The device's facts, and (once set up) a profile written by ``profiles init``'s code run there."""

    reg, rep = Registry(), reporter or Reporter()
    device = reg.get(name)

    async def job(s: session.Session) -> tuple[dict, Any]:
        facts = await s.probe()
        found = await s.agent({"op": "modules", "modules": [*CORE, *RUNTIMES[backend]]})
        if any(found.get(m) is None for m in [*CORE, backend]):
            return facts, None
        return facts, await s.agent({"op": "profile", "name": name, "backend": backend, "benchmark": benchmark}, runtime=backend)

    facts, made = session.run(device, job, rep)
    device.facts = facts
    path = None
    if made is not None:
        path = config_dir() / "profiles" / f"{name}.yaml"
        profile = made["value"]["profile"]
        profile["description"] = f"Device {name} ({facts.get('cpu') or facts.get('arch')}), {backend}, written by `edgesmith device probe` over SSH."
        atomic_write_text(path, yaml.safe_dump(profile, sort_keys=False))
        device.profile = str(path)
    reg.put(device)
    return device, facts, path


def setup(name: str, runtime: str = "onnxruntime", reporter: Any = None) -> dict[str, Any]:
    """edgesmith's torch-free side on the device: its package, and what it lacks of the core and the runtime
    unpacked from wheels this machine fetches for the device's platform (the device needs no internet
    access, no pip and no compiler; its own packages stay first on the path)."""

    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}", hint=f"one of {', '.join(RUNTIMES)}")
    reg, rep = Registry(), reporter or Reporter()
    device = reg.get(name)
    wanted = {**CORE, **RUNTIMES[runtime]}

    async def check(s: session.Session) -> tuple[dict, dict]:
        facts = await s.probe()
        return facts, await s.agent({"op": "modules", "modules": list(wanted)})

    facts, found = session.run(device, check, rep)
    missing = [m for m, v in found.items() if v is None]
    installed: list[str] = []
    if missing:
        reqs = [f"{wanted[m]}=={_local_version(wanted[m])}" for m in missing]
        wheels = wheelhouse(facts, reqs, rep)
        atexit.register(shutil.rmtree, wheels[0].parent if wheels else "", True)

        async def install(s: session.Session) -> dict:
            await s.probe()
            shas = await s.upload({w.name: w for w in wheels})
            rep.info(f"[{name}] unpacking {len(shas)} wheel(s) into {s.work}/site (no pip, no index, no internet needed there)")
            await s.script(scripts.UNWHEEL, f"{s.work}/blobs", f"{s.work}/site", _json(shas))
            return await s.agent({"op": "modules", "modules": list(wanted)})

        found = session.run(device, install, rep)
        installed = reqs
        still = [m for m, v in found.items() if v is None]
        if still:
            raise DeviceError(f"device {name} still lacks {', '.join(still)} after setup", hint="install them there by hand, then run setup again")
    device.facts = facts
    device.setup = {"runtime": runtime, "installed": installed, "versions": found}
    reg.put(device)
    return device.setup


def _json(obj: Any) -> str:
    return json.dumps(obj)


def _local_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise DeviceError(f"{dist} is not installed on this machine, so it cannot be sent to the device", hint=f"pip install {dist} here first") from None


def wheelhouse(facts: dict, reqs: list[str], rep: Any) -> list[Path]:
    """Wheels of ``reqs`` (and their dependencies) for the device's platform, fetched here (pip's cache helps)."""

    arch, abi = facts.get("arch", ""), facts.get("abi", "")
    libc = facts.get("libc") or ["", ""]
    if libc[0] != "glibc" or not arch or not abi:
        raise DeviceError(
            f"device {facts.get('hostname', '?')} is {arch or 'an unknown arch'} with {libc[0] or 'an unknown C library'}: wheels cannot be chosen for it",
            hint="install numpy, onnx, pyyaml, pydantic, typer, rich and the runtime there by hand",
        )
    minor = int(str(libc[1]).split(".")[1]) if "." in str(libc[1]) else 17
    plats = [f"manylinux_2_{m}_{arch}" for m in range(minor, 16, -1)] + [f"manylinux2014_{arch}"]
    dest = Path(tempfile.mkdtemp(prefix="edgesmith-wheels-"))  # the caller removes it; pip's own cache spares downloads
    pyver = facts["python_version"].rsplit(".", 1)[0]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        "--python-version",
        pyver,
        "--implementation",
        "cp",
        "--abi",
        abi,
    ]
    for p in plats:
        cmd += ["--platform", p]
    with rep.step(f"fetching wheels for the device ({arch}, Python {pyver}): {', '.join(reqs)}"):
        proc = subprocess.run([*cmd, *reqs], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeviceError(f"could not fetch wheels for the device: {tail[:300]}", hint="this machine needs access to a package index (or pip's cache) for them")
    return sorted(dest.glob("*.whl"))


def device_for(name: str, profile: Any = None) -> Device:
    """A registered device, checked against the target profile it will time for."""
    device = Registry().get(name)
    check_target(device, profile)
    return device


def check_target(device: Device, profile: Any) -> None:
    """A profile for another architecture than the device's is refused: its timings would say nothing about it."""

    want = profile.hardware.arch if profile is not None and profile.hardware is not None else None
    if want and device.arch and want != device.arch:
        raise ConfigError(
            f"device {device.name} is {device.arch}, but profile {profile.name} is for {want}",
            hint=f"use a profile for the device (`edgesmith device probe {device.name}` writes one) or another device",
        )


def artifact_files(path: Path) -> list[Path]:
    """An artifact and the files it loads: an OpenVINO IR's weights, an ONNX model's external data."""

    path = Path(path)
    if path.suffix == ".xml":
        return [path] + [p for p in [path.with_suffix(".bin")] if p.is_file()]
    out = [path]
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not readable here: the device's runtime will say what is wrong with it
        return out
    for t in model.graph.initializer:
        for kv in t.external_data if t.data_location == onnx.TensorProto.EXTERNAL else []:
            if kv.key == "location":
                dep = (path.parent / kv.value).resolve()
                if not dep.is_relative_to(path.parent.resolve()):
                    raise ConfigError(f"{path.name} names external data outside its folder ({kv.value!r})", hint="refusing path traversal from a model")
                if dep.is_file() and dep not in out:
                    out.append(dep)
    return out


def _files(prefix: str, path: Path) -> dict[str, Path]:
    return {f"{prefix}/{p.relative_to(path.parent).as_posix()}": p for p in artifact_files(path)}


def bench(name: str, artifact: Path, options: dict[str, Any], profile: Any = None, reporter: Any = None) -> tuple[list[dict], dict]:
    """``edgesmith bench`` on the device; rows as the local command gives them, each marked with the device."""

    device, rep = Registry().get(name), reporter or Reporter()
    check_target(device, profile)
    if not Path(artifact).is_file():
        raise ConfigError(f"artifact not found: {artifact}", hint="give the path of an .onnx model or an OpenVINO .xml")

    async def job(s: session.Session) -> tuple[Any, dict]:
        files = await s.upload(_files("a", Path(artifact)))
        req = {"op": "bench", "files": files, "artifact": f"a/{Path(artifact).name}", "options": options}
        if profile is not None:
            req["profile"] = profile.model_dump(mode="json")
        out = await s.agent(req, runtime=_runtime_of(Path(artifact)))
        return out, {**_transfer(s), "lock": out["lock"]}

    out, transfer = session.run(device, job, rep)
    rows = out["value"]
    for r in rows:
        r["device"] = name
    return rows, transfer


def compare(name: str, a: Path, b: Path, options: dict[str, Any], reporter: Any = None) -> tuple[dict, dict]:
    device, rep = Registry().get(name), reporter or Reporter()

    async def job(s: session.Session) -> tuple[Any, dict]:
        files = await s.upload({**_files("a", a), **_files("b", b)})
        out = await s.agent({"op": "compare", "files": files, "a": f"a/{a.name}", "b": f"b/{b.name}", "options": options}, runtime=_runtime_of(a))
        return out, _transfer(s)

    out, transfer = session.run(device, job, rep)
    return {**out["value"], "device": name}, transfer


def pair_timer(name: str) -> Any:
    """The gate's re-timing (baseline artifact against the candidate's, interleaved) on a device."""

    device = Registry().get(name)

    def compare_on_device(a: Any, b: Any, feeds: dict, threads: int, rounds: int, per_round: int, confidence: float = 0.95) -> Comparison:
        with tempfile.TemporaryDirectory(prefix="edgesmith-feeds-") as tmp:
            fpath = Path(tmp) / "feeds.npz"
            np.savez(fpath, **feeds)
            files = {"feeds.npz": fpath, **_files("a", Path(a.path)), **_files("b", Path(b.path))}

            async def job(s: session.Session) -> Any:
                shas = await s.upload(files)
                spec = [{"path": f"{p}/{Path(x.path).name}", "backend": x.backend, "options": x.options} for p, x in (("a", a), ("b", b))]
                opts = {"threads": threads, "rounds": rounds, "per_round": per_round, "confidence": confidence}
                return await s.agent({"op": "compare", "files": shas, "feeds": "feeds.npz", "a": spec[0], "b": spec[1], "options": opts}, runtime=a.backend)

            out = session.run(device, job)
        value = out["value"]
        return Comparison(**{f.name: value[f.name] for f in fields(Comparison)})

    return compare_on_device


def _run_files(run_dir: Path, manifest: dict, target: str | None) -> dict[str, Path]:
    """What ``validate RUN_DIR`` reads: the manifest and every file it lists (the device verifies them all
    against their recorded hashes, as a local validate does); unchanged files are not sent again."""

    files = {"run/manifest.json": run_dir / "manifest.json"}
    for rel in manifest.get("outputs", {}):
        files[f"run/{rel}"] = inside(run_dir, rel)
    return files


def validate(name: str, run_dir: Path, target: str | None = None, reporter: Any = None) -> tuple[dict, dict]:
    """``edgesmith validate RUN_DIR`` on the device: its results, marked with the device."""

    device, rep = Registry().get(name), reporter or Reporter()
    manifest = load_manifest(run_dir)
    for tname, t in manifest.get("targets", {}).items():
        if target in (None, tname):
            check_target(device, Profile.model_validate(t["profile"]))

    async def job(s: session.Session) -> tuple[Any, dict]:
        files = await s.upload(_run_files(run_dir, manifest, target))
        return await s.agent({"op": "validate", "files": files, "run": "run", "target": target}), _transfer(s)

    out, transfer = session.run(device, job, rep)
    result = out["value"]
    result.update(run=str(run_dir), device={"name": name, "host": device.host, "node": out["node"], "arch": device.arch})
    return result, transfer


def measure(name: str) -> Any:
    """The engine's ``Timing.measure`` on a device: the same race (``runtime.race``) run there."""

    device = Registry().get(name)

    def race_on_device(
        artifacts: list[Any], ref: Any, feeds: dict, threads: int, reporter: Any = None, errors: dict | None = None, rounds: int = 10
    ) -> tuple[list, dict | None, str]:
        with tempfile.TemporaryDirectory(prefix="edgesmith-feeds-") as tmp:
            fpath = Path(tmp) / "feeds.npz"
            np.savez(fpath, **feeds)
            files: dict[str, Path] = {"feeds.npz": fpath, **_files("ref", Path(ref.path))}
            for i, a in enumerate(artifacts):
                files.update(_files(f"c{i}", Path(a.path)))

            def spec(prefix: str, a: Any) -> dict:
                return {"path": f"{prefix}/{Path(a.path).name}", "backend": a.backend, "options": a.options}

            async def job(s: session.Session) -> Any:
                shas = await s.upload(files)
                req = {"op": "race", "files": shas, "feeds": "feeds.npz", "threads": threads, "rounds": rounds}
                req.update(ref=spec("ref", ref), artifacts=[spec(f"c{i}", a) for i, a in enumerate(artifacts)])
                return await s.agent(req, runtime=ref.backend)

            out = session.run(device, job, reporter)
        if errors is not None:
            errors.update({int(k): v for k, v in out["value"]["errors"].items()})
        return out["value"]["results"], out["value"]["machine"], f"device:{name}"

    return race_on_device


def _runtime_of(path: Path) -> str:
    return "openvino" if Path(path).suffix == ".xml" else "onnxruntime"


def _transfer(s: session.Session) -> dict:
    return {"sent_files": s.sent_files, "sent_bytes": s.sent_bytes, "cached_files": s.cached_files}


def record(run_dir: Path, result: dict) -> Path:
    """The device's results into the run: ``manifest.json``'s ``devices.<name>`` and ``devices/<name>.md``
    (the verdict table, as report.md has it for this machine), the report listed among the run's outputs
    and the manifest's digest renewed, so the run verifies as before. Both written whole or not at all."""

    name = result["device"]["name"]
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    entry = {k: result[k] for k in ("device", "targets", "verdict", "versions") if k in result}
    entry["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    before = (manifest.get("devices") or {}).get(name) or {}
    if before.get("targets") and len(result.get("targets", {})) < len(before["targets"]):  # one target re-validated: keep the others
        entry["targets"] = {**before["targets"], **entry["targets"]}
        entry["verdict"] = combine([t.get("verdict", "pass") for t in entry["targets"].values()])
    manifest.setdefault("devices", {})[name] = json.loads(json.dumps(entry, default=str))
    lines = [f"# On device {name} ({result['device'].get('arch') or '?'}, {result['device'].get('node') or result['device'].get('host')})", ""]
    lines += [
        f"Validated over SSH on {entry['measured_at']}: accuracy on the device's runtime, latency timed there. Verdict: **{result['verdict'].upper()}**",
        "",
    ]
    for tname, t in result.get("targets", {}).items():
        lines += [f"## {tname}: {t['verdict'].upper()}", "", *md_table(["metric", "value", "float", "budget", "verdict", "detail"])]
        lines += [md_row(r) for r in verdict_rows(t)] + [""]
    report = run_dir / "devices" / f"{name}.md"
    atomic_write_text(report, "\n".join(lines))
    manifest.setdefault("outputs", {})[f"devices/{name}.md"] = {"sha256": sha256(report), "bytes": report.stat().st_size}
    manifest["digest"] = manifest_digest(manifest)
    atomic_write_text(path, json.dumps(manifest, indent=2))
    return report
