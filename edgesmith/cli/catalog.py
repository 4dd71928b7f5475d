"""What is available: passes, profiles, the zoo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgesmith.cli.app import app, profiles_app, zoo_app
from edgesmith.cli.common import RichReporter, guarded
from edgesmith.errors import ConfigError
from edgesmith.schema import MAX_SEED, MAX_THREADS
from edgesmith.terminal import say


@app.command()
@guarded
def passes() -> None:
    """List the compression passes, their options and what each needs before it; plugins that failed to
    load are listed as broken (every other command still works), and names two packages claim as conflicts."""
    import dataclasses

    from edgesmith.compress import known_passes
    from edgesmith.compress.registry import pass_origin, plugin_problems

    for name, info in known_passes().items():
        origin = pass_origin(name)
        say(f"{name}  [{info.stage}]  {info.summary}" + (f"  (plugin: {origin})" if origin != "edgesmith" else ""))
        needs = [f"needs {k.__name__}" for k in info.requires] + [f"after {n}" for n in info.runs_after]
        if info.precision or needs:
            say(f"    produces {info.precision or 'float'}" + (f"; {', '.join(needs)}" if needs else ""))
        for f in dataclasses.fields(info.config):
            default = f.default if f.default is not dataclasses.MISSING else "required"
            say(f"    {f.name} = {default!r}")
    broken, conflicts = plugin_problems()
    for b in broken:
        say(f"BROKEN plugin {b.name!r} from {b.distribution}: {b.error}")
    for name, who in conflicts.items():
        say(f"CONFLICT pass {name!r} is claimed by {' and '.join(who)}: neither is used")


@app.command()
@guarded
def backends() -> None:
    """List the runtimes a profile or `bench --backend` may name (built-in and plugins), whether each is
    installed here and whether it can be timed on this host's CPU.

    Example: edgesmith backends
    """
    from edgesmith.runtime import get_backend, known_backends

    for name in known_backends():
        b = get_backend(name, require_installed=False)
        here = "installed" if b.available() else "not installed"
        cpu = ", runs on this CPU" if getattr(b, "runs_on_host_cpu", False) else ""
        status = ", EXPERIMENTAL: written to the documented API, never run on a GPU" if getattr(b, "experimental", False) else ""
        say(f"{name}  ({here}{cpu}{status})")


@profiles_app.command("list")
@guarded
def profiles_list() -> None:
    """List built-in target profiles."""
    from edgesmith.profiles import builtin_names, load_profile

    for name in builtin_names():
        p = load_profile(name)
        say(f"{name:24s} {p.backend:12s} {p.hardware.arch:8s} {'(estimated budgets) ' if p.estimated else ''}{p.description.strip()[:80]}")


@profiles_app.command("show")
@guarded
def profiles_show(name: Annotated[str, typer.Argument(help="Built-in profile name or a profile .yaml file.")]) -> None:
    """Show one profile as YAML.  Example: edgesmith profiles show x86-avx512-vnni-ort"""
    import yaml

    from edgesmith.profiles import load_profile

    print(yaml.safe_dump(load_profile(name).model_dump(mode="json"), sort_keys=False), end="")


@profiles_app.command("init")
@guarded
def profiles_init(
    name: Annotated[str, typer.Argument(help="Name of the new profile.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the profile YAML.")] = Path("profile.yaml"),
    backend: Annotated[str, typer.Option(help="onnxruntime or openvino.")] = "onnxruntime",
    threads: Annotated[int | None, typer.Option(min=1, max=MAX_THREADS, help="Threads (default: all cores).")] = None,
    no_benchmark: Annotated[bool, typer.Option("--no-benchmark", help="Skip the short INT8 benchmark.")] = False,
) -> None:
    """Write a profile for this machine: CPU features, cores, and INT8 defaults from a short benchmark.

    Example: edgesmith profiles init my-box -o my-box.yaml && edgesmith quantize MODEL -t my-box.yaml
    """
    import yaml

    from edgesmith.outputs import atomic_write_text, check_writable
    from edgesmith.profiles.schema import Profile
    from edgesmith.runtime.probe import init_profile

    if backend not in ("onnxruntime", "openvino"):
        raise ConfigError(f"profiles init supports onnxruntime and openvino, not {backend!r}", hint="--backend onnxruntime")
    check_writable(out.parent)
    with RichReporter().step("probing this machine" + ("" if no_benchmark else " (about 10 s of benchmark)")):
        data, notes = init_profile(name, backend, threads, benchmark=not no_benchmark)
    Profile.model_validate(data)  # what we write must load
    atomic_write_text(out, yaml.safe_dump(data, sort_keys=False))
    for n in notes:
        say(f"- {n}")
    say(f"profile {name!r} written to {out}")


@zoo_app.command("train")
@guarded
def zoo_train(
    names: Annotated[
        list[str] | None, typer.Argument(metavar="[NAME...]", help="digits_resnet, digits_mobilenet, digits_prelu_heads, digits_encoder (default: all).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Train again even if cached.")] = False,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs (default: each model's own).")] = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED)] = 0,
) -> None:
    """Train the zoo's digits models and cache them, so tests, benchmarks and recipes
    (edgesmith.zoo:trained_digits_resnet, ..._mobilenet, ..._prelu_heads, ..._encoder) share them.

    Example: edgesmith zoo train digits_resnet
    """
    from edgesmith.zoo.digits32 import ARCHS, train_cached

    for name in names or list(ARCHS):
        with RichReporter().step(f"{name}: training on the digits (or reading the cache)"):
            path, acc = train_cached(name, seed, force, epochs=epochs)
        say(f"{name}: {'held-out top-1 ' + format(acc * 100, '.2f') + '%, ' if acc is not None else 'cached, '}{path}")
