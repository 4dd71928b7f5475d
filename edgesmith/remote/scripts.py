"""Python the build machine runs on a device with ``python -c SOURCE ARG...`` before edgesmith is there:
the standard library only, arguments passed as arguments (quoted by ``shlex.join``), never pasted into
the source."""

# The device's facts, its work folder made (0700) and resolved: one JSON line.
PROBE = r"""
import json, os, platform, sys
work = os.path.abspath(os.path.expanduser(sys.argv[1]))
os.makedirs(work, mode=0o700, exist_ok=True)
flags, model = set(), ""
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
        elif line.startswith(("model name", "Model", "Hardware")) and not model:
            model = line.split(":", 1)[1].strip()
except OSError:
    pass
mem = None
try:
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
except OSError:
    pass
try:
    cores = len(os.sched_getaffinity(0))
except AttributeError:
    cores = os.cpu_count()
versions = {}
try:
    import importlib.metadata as md
    for dist in ("numpy", "onnx", "onnxruntime", "openvino", "edgesmith", "torch"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
except ImportError:
    pass
st = os.statvfs(work)
machine = platform.machine().lower()
print(json.dumps({
    "arch": {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine),
    "system": platform.system(), "release": platform.release(), "os": " ".join(platform.freedesktop_os_release().get(k, "") for k in ("NAME", "VERSION_ID")).strip() if hasattr(platform, "freedesktop_os_release") and os.path.exists("/etc/os-release") else platform.platform(),
    "cpu": model, "cores": cores, "memory_bytes": mem, "flags": sorted(flags),
    "python": sys.executable, "python_version": "%d.%d.%d" % sys.version_info[:3], "abi": "cp%d%d" % sys.version_info[:2],
    "libc": list(platform.libc_ver()), "hostname": platform.node(),
    "versions": versions, "work": work, "free_bytes": st.f_bavail * st.f_frsize,
}))
"""

# Unpack a zip (edgesmith's package) into a folder, all at once: extracted aside, renamed into place.
UNPACK = r"""
import os, shutil, sys, zipfile
blob, dest = sys.argv[1], sys.argv[2]
if os.path.isdir(dest):
    sys.exit(0)
tmp = dest + ".tmp-%d" % os.getpid()
root = os.path.realpath(tmp)
with zipfile.ZipFile(blob) as z:
    for name in z.namelist():
        if not os.path.realpath(os.path.join(tmp, name)).startswith(root + os.sep):
            sys.exit("refusing %r: outside the package" % name)
    z.extractall(tmp)
try:
    os.rename(tmp, dest)
except OSError:
    shutil.rmtree(tmp, ignore_errors=True)
    if not os.path.isdir(dest):
        raise
"""

# The agent: edgesmith's package folder first on the path, what `device setup` installed last (the device's
# own packages win), the same for the benchmark children; then edgesmith.device.agent reads its request.
BOOT = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
sys.path.append(sys.argv[2])
os.environ["PYTHONPATH"] = os.pathsep.join([sys.argv[1], *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p], sys.argv[2]])
from edgesmith.device.agent import main
main()
"""

# `device setup`: wheels unpacked into one folder (what `pip install --target` does, without needing pip
# or a virtual environment on the device, and without internet there). Staged aside, renamed into place.
UNWHEEL = r"""
import json, os, shutil, sys, zipfile
blobs, site, wheels = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
tmp = site + ".tmp-%d" % os.getpid()
if os.path.isdir(site):
    shutil.copytree(site, tmp, symlinks=True)
root = os.path.realpath(tmp)
try:
    for name, sha in sorted(wheels.items()):
        if "/" in name or name.startswith(".") or not name.endswith(".whl"):
            sys.exit("refusing the wheel name %r" % name)
        with zipfile.ZipFile(os.path.join(blobs, sha)) as z:
            for member in z.infolist():
                parts = member.filename.split("/")
                if len(parts) > 2 and parts[0].endswith(".data"):
                    if parts[1] not in ("purelib", "platlib"):
                        continue  # scripts, headers: not needed to import
                    parts = parts[2:]
                dest = os.path.realpath(os.path.join(tmp, *parts))
                if not dest.startswith(root + os.sep):
                    sys.exit("refusing %r in %s: outside the folder" % (member.filename, name))
                if member.is_dir():
                    os.makedirs(dest, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with z.open(member) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
                mode = (member.external_attr >> 16) & 0o777
                if mode:
                    os.chmod(dest, mode)
    old = site + ".old-%d" % os.getpid()
    if os.path.isdir(site):
        os.rename(site, old)
    os.rename(tmp, site)
    shutil.rmtree(old, ignore_errors=True)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
print(site)
"""
