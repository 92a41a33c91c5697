"""Issues 7 and 13: cold start of the function vs a hello-world function under the same
framework, and vs the "floor": hello world plus what the design card requires before the
first answer (pydantic-settings with one BaseSettings read from the environment, httpx
with one Client built; ``bench._procs.FLOOR_SOURCE``).

Clock: from just before ``functions-framework --target on_event --signature-type
cloudevent`` is spawned to the first 200 answer to a real CloudEvent POST,
polled (a fresh connection every 5 ms while the port refuses). The product's
event is a ``sdrs.failurejob.expired`` for a task that is not listed: it lists
the (empty) top level and the (empty) protection groups of a stand-in in its own
process and posts ``already_deleted`` to an ``OutcomeSink`` in its own process.
Starts are interleaved (function, hello, floor, floor with GC paused, function, ...).

Import costs: ``python -X importtime -c "import main"`` (module bodies included,
so ``main`` counts building the app), parsed from stderr, median per module over
several runs; and the wall time of ``python -c "import main"`` vs the floor's module vs
``python -c "import functions_framework"`` vs ``python -c pass``, interleaved.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from bench._procs import (
    PY,
    ROOT,
    Function,
    clean_env,
    cloudevent,
    floor_source,
    function_env,
    hello_source,
    runtime_python,
)
from bench._procs import sink as sink_server
from bench._procs import standin as standin_server
from bench._report import Result, Table, fmt_ratio, median, ratio, say


def _copy_app(directory: str) -> Path:
    """The function's files, as the container image holds them (no __pycache__)."""
    app = Path(directory)
    for name in ("main.py", "failjob_reaper", "handlers"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, app / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, app / name)
    return app


def time_to_first_answer(source: Path, target: str, env: dict[str, str],
                         event_type: str, timeout: float = 60.0, cwd: Path = ROOT,
                         python: str = PY) -> dict[str, Any]:
    fn = Function(source, target, env, cwd=cwd, python=python)
    try:
        deadline = fn.started + timeout
        attempts = 0
        while True:
            attempts += 1
            headers, body = cloudevent(event_type, {"failure_job_id": str(uuid.uuid4())})
            try:
                answer = httpx.post(fn.url, headers=headers, content=body, timeout=timeout)
            except httpx.TransportError:
                answer = None
            now = time.perf_counter()
            if answer is not None and answer.status_code == 200:
                return {"seconds": now - fn.started, "attempts": attempts}
            if fn.process.poll() is not None:
                raise RuntimeError(f"{target} exited: {fn.stderr_tail()}")
            if now > deadline:
                status = answer.status_code if answer is not None else "no answer"
                raise TimeoutError(f"{target}: no 200 within {timeout:.0f}s ({status})")
            time.sleep(0.005)  # poll interval, bounded by the deadline
    finally:
        fn.stop()


def parse_importtime(stderr: str) -> list[tuple[str, int, int, int]]:
    """(module, depth, self us, cumulative us) for each ``import time:`` line."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3:
            continue
        self_us, cumulative = int(parts[0]), int(parts[1])
        raw = parts[2].rstrip()
        stripped = raw.lstrip()
        depth = (len(raw) - len(stripped) - 1) // 2
        rows.append((stripped, depth, self_us, cumulative))
    return rows


def importtime(env: dict[str, str], statement: str, runs: int, cwd: Path = ROOT,
               python: str = PY) -> dict[str, dict[str, float]]:
    """Median self/cumulative microseconds per module over ``runs`` runs."""
    selfs: dict[str, list[int]] = defaultdict(list)
    cumuls: dict[str, list[int]] = defaultdict(list)
    depths: dict[str, int] = {}
    for _ in range(runs):
        done = subprocess.run([python, "-X", "importtime", "-c", statement], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{statement!r} failed: {done.stderr[-1500:]}")
        for name, depth, self_us, cumulative in parse_importtime(done.stderr):
            selfs[name].append(self_us)
            cumuls[name].append(cumulative)
            depths.setdefault(name, depth)
    return {name: {"self": median(selfs[name]), "cumulative": median(cumuls[name]),
                   "depth": depths[name]} for name in selfs}


def process_wall(env: dict[str, str], statement: str, cwd: Path = ROOT,
                 python: str = PY) -> float:
    started = time.perf_counter()
    subprocess.run([python, "-c", statement], cwd=cwd, env=env, capture_output=True,
                   timeout=120, check=True)
    return time.perf_counter() - started


def run(quick: bool) -> Result:
    starts = 3 if quick else 11
    import_runs = 3 if quick else 7
    result = Result("coldstart", "Cold start (issues 7, 13)")
    say("coldstart: runtime-only venv (requirements.txt), as deployed")
    rt = runtime_python()
    with contextlib.ExitStack() as stack:
        si = stack.enter_context(standin_server())
        sk = stack.enter_context(sink_server())
        hello = stack.enter_context(hello_source())
        floor = stack.enter_context(floor_source())
        floor_gc = stack.enter_context(floor_source(gc_paused=True))
        # Bytecode as deployed: the container image copies the app and compiles it
        # (compileall, unchecked-hash). This workspace may run with PYTHONDONTWRITEBYTECODE=1,
        # which would compile the product's sources on every start; so both functions run
        # from compiled copies in temporary directories (the repository gets no .pyc).
        app = _copy_app(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-app-")))
        # ... and an uncompiled copy, to show what the compilation costs.
        app_src = _copy_app(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="bench-app-src-")))
        subprocess.run(
            [rt, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(app),
             str(hello.parent), str(floor.parent), str(floor_gc.parent)],
            cwd=app, env=clean_env(), check=True, timeout=120, stdout=subprocess.DEVNULL,
        )
        # Rate limit off, as in every run of this benchmark: pacing is a cost of the event
        # path (see "overhead"), not of starting.
        product_env = function_env(si, sink_url=sk.url, SWEEP_RATE_LIMIT="0",
                                   PYTHONPATH=str(app))
        hello_env = clean_env()
        # The floor reads the product's SDRS_ENDPOINT / SDRS_PROJECT_ID (not its app path).
        floor_env = {k: v for k, v in product_env.items() if k != "PYTHONPATH"}
        source_env = {**product_env, "PYTHONPATH": str(app_src), "PYTHONDONTWRITEBYTECODE": "1"}
        samples: dict[str, list[dict[str, Any]]] = {"function": [], "hello": [], "floor": [],
                                                    "floor_gc": []}
        for i in range(starts):
            say(f"coldstart: start {i + 1}/{starts} (function, hello world, floors)")
            samples["function"].append(time_to_first_answer(
                app / "main.py", "on_event", product_env, "sdrs.failurejob.expired", cwd=app,
                python=rt))
            samples["hello"].append(time_to_first_answer(hello, "hello", hello_env,
                                                         "bench.hello", python=rt))
            samples["floor"].append(time_to_first_answer(floor, "hello", floor_env,
                                                         "bench.hello", python=rt))
            samples["floor_gc"].append(time_to_first_answer(floor_gc, "hello", floor_env,
                                                            "bench.hello", python=rt))
        counts = sk.stats()["counts"]

        say("coldstart: -X importtime")
        main_imports = importtime(product_env, "import main", import_runs, cwd=app, python=rt)
        ff_imports = importtime(hello_env, "import functions_framework", import_runs,
                                python=rt)
        floor_imports = importtime(floor_env, "import main", import_runs, cwd=floor.parent,
                                   python=rt)
        walls: dict[str, list[float]] = {"pass": [], "ff": [], "floor": [], "main": [],
                                         "main_src": []}
        for _ in range(import_runs):
            walls["pass"].append(process_wall(hello_env, "pass", python=rt))
            walls["ff"].append(process_wall(hello_env, "import functions_framework", python=rt))
            walls["floor"].append(process_wall(floor_env, "import main", cwd=floor.parent,
                                               python=rt))
            walls["main"].append(process_wall(product_env, "import main", cwd=app, python=rt))
            walls["main_src"].append(process_wall(source_env, "import main", cwd=app_src,
                                                  python=rt))

    fn_s = [s["seconds"] for s in samples["function"]]
    hello_s = [s["seconds"] for s in samples["hello"]]
    floor_s = [s["seconds"] for s in samples["floor"]]
    floor_gc_s = [s["seconds"] for s in samples["floor_gc"]]
    table = Table(
        f"Start of functions-framework to first answered CloudEvent (median of {starts}, "
        "interleaved)",
        ["function", "median (s)", "min (s)", "max (s)", "÷ hello world", "÷ floor",
         "÷ floor, GC paused"],
    )
    for label, secs in (
        ("hello world (cloudevent, same framework)", hello_s),
        ("floor: hello world + one BaseSettings from the env + one httpx.Client", floor_s),
        ("floor, no garbage collection while it builds (as main.py)", floor_gc_s),
        ("failjob-reaper on_event (expired event, lists stand-in, posts outcome)", fn_s),
    ):
        table.add(label, median(secs), min(secs), max(secs),
                  fmt_ratio(ratio(median(secs), median(hello_s))),
                  fmt_ratio(ratio(median(secs), median(floor_s))),
                  fmt_ratio(ratio(median(secs), median(floor_gc_s))))
    imports = Table(
        f"Process wall time, `python -c ...` (median of {import_runs}, interleaved)",
        ["statement", "median (ms)", "minus `pass` (ms)", "÷ import functions_framework "
         "(net of `pass`)"],
    )
    base = median(walls["pass"])
    ff_net = median(walls["ff"]) - base
    for key, label in (("pass", "pass"), ("ff", "import functions_framework"),
                       ("floor", "the floor's module (BaseSettings read, httpx.Client built)"),
                       ("main", "import main (builds the app)"),
                       ("main_src", "import main without .pyc of the product "
                                    "(PYTHONDONTWRITEBYTECODE=1: compiled at every start)")):
        net = median(walls[key]) - base
        imports.add(label, median(walls[key]) * 1000, net * 1000,
                    fmt_ratio(ratio(net, ff_net)) if key != "pass" else None)

    top = sorted(main_imports.items(), key=lambda kv: kv[1]["cumulative"], reverse=True)[:15]
    top_table = Table(
        f"`python -X importtime -c \"import main\"`: top 15 cumulative (median of "
        f"{import_runs} runs)",
        ["module", "depth", "cumulative (ms)", "self (ms)"],
    )
    for name, values in top:
        top_table.add(f"`{name}`", int(values["depth"]), values["cumulative"] / 1000,
                      values["self"] / 1000)

    # What main adds on top of the framework: modules `import functions_framework` never loads.
    by_package: dict[str, float] = defaultdict(float)
    for name, values in main_imports.items():
        if name not in ff_imports:
            by_package[name.split(".")[0]] += values["self"]
    packages = Table(
        "Modules `import main` loads beyond `import functions_framework`: self time per "
        "top-level package (top 12)",
        ["package", "self (ms)", "share of the extra"],
    )
    total_self = sum(by_package.values()) or 1.0
    for name, us in sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)[:12]:
        packages.add(f"`{name}`", us / 1000, f"{us / total_self:.0%}")

    # What is ours: modules `import main` loads that the floor's module does not.
    beyond_floor = {name: values["self"] for name, values in main_imports.items()
                    if name not in floor_imports}
    ours = Table(
        "Modules `import main` loads beyond the floor's module: self time (top 15)",
        ["module", "self (ms)"],
    )
    for name, us in sorted(beyond_floor.items(), key=lambda kv: kv[1], reverse=True)[:15]:
        ours.add(f"`{name}`", us / 1000)
    ours.add("all of them", sum(beyond_floor.values()) / 1000)

    main_cum = main_imports.get("main", {}).get("cumulative")
    ff_cum = ff_imports.get("functions_framework", {}).get("cumulative")
    main_self = main_imports.get("main", {}).get("self") or 0.0
    cli_only = sum(v["self"] for name, v in main_imports.items()
                   if name.split(".")[0] in ("rich", "pygments"))
    result.tables += [table, imports, top_table, packages, ours]
    hello_m, floor_m, fn_m = median(hello_s), median(floor_s), median(fn_s)
    floor_gc_m = median(floor_gc_s)
    result.notes = [
        f"Ratios of the medians: product ÷ hello world {fmt_ratio(ratio(fn_m, hello_m))}, "
        f"floor ÷ hello world {fmt_ratio(ratio(floor_m, hello_m))}, product ÷ floor "
        f"{fmt_ratio(ratio(fn_m, floor_m))}; with the floor's garbage collection paused "
        f"as main.py pauses the product's: floor ÷ hello world "
        f"{fmt_ratio(ratio(floor_gc_m, hello_m))}, product ÷ floor "
        f"{fmt_ratio(ratio(fn_m, floor_gc_m))}. The floor is what the design card's "
        "libraries cost before any line of the product runs (pydantic-settings brings "
        "pydantic, python-dotenv, asyncio; httpx's Client brings httpcore, h11, anyio); "
        "product ÷ floor (GC paused in both) is the part the product owns.",
        "The clock includes interpreter start, imports, building the app (settings, policy, "
        "HTTP clients), gunicorn's master and worker start, and the first event (new "
        "connections to the stand-in and the sink). Every function runs from a copy compiled "
        "beforehand, as infra/container/Dockerfile does (`compileall`, unchecked-hash). "
        "SWEEP_RATE_LIMIT=0 for the product, as in the earlier runs (pacing belongs to the "
        "event path: see \"overhead\"). "
        "The floor answers like hello world (no request of its own) and builds its client "
        "as the product does for the plain-http stand-in (no CA bundle: with an https "
        "endpoint each would load it once, some 20 ms).",
        f"importtime totals: `main` {(main_cum or 0) / 1000:.0f} ms cumulative (its body, "
        f"building the app, {main_self / 1000:.0f} ms self); `import functions_framework` "
        f"alone {(ff_cum or 0) / 1000:.0f} ms; main ÷ functions_framework "
        f"{fmt_ratio(ratio(main_cum, ff_cum))}. (main.py imports flask before "
        "functions_framework, so flask and werkzeug are listed under main, not under "
        "functions_framework.)",
        f"Outcomes received by the sink during the starts: {counts}.",
        f"`rich` + `pygments` in `import main`: {cli_only / 1000:.0f} ms self time; nothing of "
        "the function uses them: `httpx/__init__.py` imports its command line (`httpx._main`) "
        "whenever click, rich and pygments are importable." if cli_only
        else "`rich`/`pygments` are not imported by `main` (the runtime venv has neither; the "
        "operator CLI uses tqdm, so `import httpx` does not pull in httpx's own CLI).",
    ]
    result.data = {"samples": samples, "walls": walls, "main_imports": main_imports,
                   "ff_imports": ff_imports, "floor_imports": floor_imports}
    return result
