#!/usr/bin/env python3
"""Peers: the fan-out and round-trip work of the Switchyard benchmarks, run on Celery, Dask
distributed and Ray, each with 4 workers on loopback on this machine.

Method (the same work as `fanout` and `roundtrip` with the noop package child):
- fan-out: N no-op tasks (10,000 by default) submitted from one driver; throughput = N / time from
  the first submit until the driver knows every task has completed (its result is stored). These
  systems have no state comparable to Switchyard's acknowledged start (committed by the agent), so
  completion is the figure. The submit-only rate (N / time the submit calls took) is reported
  where it means something: Celery (each call returns once the message is in the broker) and Ray
  (each call returns once the task is queued in the driver's own process); Dask's `client.map`
  returns before the scheduler has seen the tasks, so it has none.
- round trip: one no-op task at a time, submit and wait for its result, 100 times after a
  warm-up; p50 and p99 (nearest rank) in ms.
Each peer is started once and warmed up, then measured `--runs` times: round-trip series each time,
fan-outs only while they took less than `--budget` seconds in all (at least one); figures are
medians of the runs.

Peers:
- Celery: a Redis server (from Debian) on a private loopback port as broker and result backend,
  no persistence, stopped afterwards; workers started with `celery worker` (default: one worker,
  prefork pool, concurrency 4, prefetch multiplier 16, no gossip/mingle/heartbeat; `--celery-pool
  solo` starts 4 solo workers instead: measured against each other here, within the noise, prefork a
  little ahead; both are held back by the one producer, whose `apply_async` costs about 1 ms).
  Completion is waited for with `ResultSet.join_native` (results pushed over Redis pub/sub).
- Dask: `LocalCluster(n_workers=4, threads_per_worker=1)` (worker processes, no dashboard);
  fan-out with `client.map(..., pure=False)`, completion with `distributed.wait`.
- Ray: `ray.init(num_cpus=4)` local (no dashboard); fan-out with one `.remote()` per task,
  completion with `ray.get` on all of them.

Each peer runs in a child process of its own (its own session) with a time limit; a peer that is
missing, fails or runs out of time is reported with an "error" field and the others still run.
Prints one JSON object on stdout; progress goes to stderr.
"""

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
# No __pycache__ in the source tree (celery_tasks is imported from here, also by the workers).
sys.dont_write_bytecode = True
os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
WORKERS = 4
PEERS = ("celery", "dask", "ray")


def log(message):
    """Progress on stderr."""
    print(f"  [peers] {message}", file=sys.stderr, flush=True)


def percentile(ordered, q):
    """Nearest-rank percentile of sorted samples (as the Rust bench's `floor::percentile`)."""
    if not ordered:
        return 0.0
    rank = min(max(math.ceil(q * len(ordered)), 1), len(ordered))
    return ordered[rank - 1]


def median(samples):
    """The median of some samples (None when there are none)."""
    ordered = sorted(s for s in samples if s is not None)
    n = len(ordered)
    if n == 0:
        return None
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def version(package):
    """The installed version of a distribution."""
    return importlib.metadata.version(package)


def free_port():
    """A loopback TCP port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, seconds, what):
    """Polls `check` until it returns a true value, at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {seconds} s")
        time.sleep(0.05)


class Peer:
    """What the measurement needs of a peer: submit many tasks, wait for them, one round trip."""

    def submit_many(self, n):
        """Submits n no-op tasks; returns a handle for wait_all."""
        raise NotImplementedError

    def wait_all(self, handle, n):
        """Waits until every task of `handle` has completed; checks the results."""
        raise NotImplementedError

    def one(self, i):
        """Submits one no-op task and waits for its result."""
        raise NotImplementedError

    def release(self, handle):
        """Drops what the peer keeps of a finished fan-out (not timed)."""


def fanout(peer, n):
    """One fan-out run: (submit-only seconds, seconds from the first submit to every completion)."""
    started = time.perf_counter()
    handle = peer.submit_many(n)
    submitted = time.perf_counter()
    peer.wait_all(handle, n)
    done = time.perf_counter()
    peer.release(handle)
    return submitted - started, done - started


def roundtrip(peer, n):
    """n round trips one at a time; each one's time in ms, sorted."""
    samples = []
    for i in range(n):
        started = time.perf_counter()
        result = peer.one(i)
        samples.append((time.perf_counter() - started) * 1e3)
        if result != i:
            raise RuntimeError(f"round trip {i} returned {result!r}")
    return sorted(samples)


def measure(peer, args, submit_meaningful):
    """Warm-up, then `runs` round-trip series and up to `runs` fan-outs (no new fan-out once they
    took `budget` seconds in all); medians and each run's figures."""
    log(f"warm-up: {args.warmup} round trips and a fan-out of {WORKERS * 50}")
    roundtrip(peer, args.warmup)
    fanout(peer, WORKERS * 50)
    runs = {"fanout_per_s": [], "submit_per_s": [], "fanout_s": [], "p50_ms": [], "p99_ms": []}
    for run in range(args.runs):
        note = ""
        if run == 0 or sum(runs["fanout_s"]) < args.budget:
            submit_s, total_s = fanout(peer, args.tasks)
            runs["fanout_per_s"].append(args.tasks / total_s)
            runs["submit_per_s"].append(args.tasks / submit_s if submit_meaningful else None)
            runs["fanout_s"].append(total_s)
            note = f"fan-out {args.tasks} in {total_s:.2f} s ({args.tasks / total_s:,.0f}/s, submit {submit_s:.2f} s); "
        samples = roundtrip(peer, args.roundtrip)
        runs["p50_ms"].append(percentile(samples, 0.50))
        runs["p99_ms"].append(percentile(samples, 0.99))
        p50, p99 = runs["p50_ms"][-1], runs["p99_ms"][-1]
        log(f"run {run + 1}/{args.runs}: {note}round trip p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    return {
        "fanout_per_s": median(runs["fanout_per_s"]),
        "submit_per_s": median(runs["submit_per_s"]),
        "roundtrip_p50_ms": median(runs["p50_ms"]),
        "roundtrip_p99_ms": median(runs["p99_ms"]),
        "tasks": args.tasks,
        "roundtrip_tasks": args.roundtrip,
        "fanout_runs": len(runs["fanout_s"]),
        "roundtrip_runs": len(runs["p50_ms"]),
        "runs_fanout_per_s": runs["fanout_per_s"],
        "runs_fanout_s": runs["fanout_s"],
        "runs_roundtrip_p50_ms": runs["p50_ms"],
        "runs_roundtrip_p99_ms": runs["p99_ms"],
    }


def session(start, args, submit_meaningful):
    """Starts a peer, measures it and stops it; adds how long starting and stopping took."""
    started = time.monotonic()
    peer = start()
    start_s = time.monotonic() - started
    log(f"started in {start_s:.1f} s")
    try:
        figures = measure(peer, args, submit_meaningful)
    finally:
        stopping = time.monotonic()
        peer.close()
        stop_s = time.monotonic() - stopping
        log(f"stopped in {stop_s:.1f} s")
    figures["start_s"], figures["stop_s"] = round(start_s, 2), round(stop_s, 2)
    return figures


# --- Celery -------------------------------------------------------------------------------------


class Redis:
    """A private redis-server on a free loopback port, no persistence; stopped by `stop`."""

    def __init__(self, folder):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", folder, "--daemonize", "no", "--loglevel", "warning"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        self.client = redis.Redis(port=self.port)
        wait_until(self.client.ping, 10, "redis-server")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Celery(Peer):
    """A Redis broker and backend, and `celery worker` processes (see the module doc)."""

    def __init__(self, args, folder):
        self.redis = Redis(folder)
        self.workers = []
        try:
            self.start_workers(args)
        except BaseException:
            self.close()
            raise

    def start_workers(self, args):
        os.environ["PEERS_REDIS_URL"] = self.redis.url
        sys.path.insert(0, HERE)
        import celery_tasks

        self.app, self.noop = celery_tasks.app, celery_tasks.noop
        if args.celery_pool == "solo":
            nodes = [(f"w{i}@peers", ["--pool", "solo"]) for i in range(WORKERS)]
        else:
            nodes = [("w@peers", ["--pool", "prefork", "--concurrency", str(WORKERS)])]
        for name, pool in nodes:
            command = [sys.executable, "-m", "celery", "-A", "celery_tasks", "--quiet", "worker", "-n", name, *pool]
            command += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"]
            command += ["-Q", celery_tasks.QUEUE]
            # Quiet: no banner, and no warning about running as root (this machine runs as root).
            env = dict(os.environ, PYTHONWARNINGS="ignore")
            self.workers.append(subprocess.Popen(command, cwd=HERE, stdout=sys.stderr, env=env))
        log(f"celery: {len(nodes)} worker process(es) ({args.celery_pool}), redis on port {self.redis.port}")
        wait_until(lambda: len(self.app.control.ping(timeout=0.5)) >= len(nodes), 60, "celery workers")

    def submit_many(self, n):
        from celery.result import ResultSet

        return ResultSet([self.noop.apply_async((i,)) for i in range(n)], app=self.app)

    def wait_all(self, handle, n):
        results = handle.join_native(timeout=120)
        if sorted(results) != list(range(n)):
            raise RuntimeError("celery: wrong results")

    def release(self, handle):
        handle.forget()

    def one(self, i):
        # Results are left to expire: the Redis server goes at the end (a DEL would be timed here).
        return self.noop.apply_async((i,)).get(timeout=10)

    def close(self):
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
        self.redis.stop()


def run_celery(args):
    with tempfile.TemporaryDirectory(prefix="peers-celery-") as folder:
        figures = session(lambda: Celery(args, folder), args, submit_meaningful=True)
    figures["workers"] = f"redis broker and backend; {args.celery_pool} pool, " + (
        f"{WORKERS} solo workers" if args.celery_pool == "solo" else f"1 worker, concurrency {WORKERS}"
    )
    figures["version"] = version("celery")
    figures["versions"] = {"celery": version("celery"), "kombu": version("kombu"), "redis-py": version("redis")}
    figures["versions"]["redis-server"] = redis_server_version()
    return figures


def redis_server_version():
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=True).stdout
    return next((w[2:] for w in out.split() if w.startswith("v=")), out.strip())


# --- Dask ---------------------------------------------------------------------------------------


def noop(i=0):
    """The no-op task of Dask and Ray: returns its argument."""
    return i


class Dask(Peer):
    """`LocalCluster(n_workers=4, threads_per_worker=1)` and a client."""

    def __init__(self):
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(
            n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
        )
        self.client = Client(self.cluster)
        self.client.wait_for_workers(WORKERS, timeout=60)
        log(f"dask: {WORKERS} worker processes, 1 thread each, scheduler {self.cluster.scheduler_address}")

    def submit_many(self, n):
        return self.client.map(noop, range(n), pure=False)

    def wait_all(self, handle, n):
        from distributed import wait

        wait(handle, timeout=120)
        if any(f.status != "finished" for f in handle):
            raise RuntimeError("dask: a task did not finish")

    def release(self, handle):
        self.client.cancel(handle)
        handle.clear()

    def one(self, i):
        return self.client.submit(noop, i, pure=False).result(timeout=10)

    def close(self):
        self.client.close()
        self.cluster.close()


def run_dask(args):
    figures = session(Dask, args, submit_meaningful=False)
    figures["workers"] = f"LocalCluster: {WORKERS} worker processes, 1 thread each"
    figures["version"] = version("distributed")
    figures["versions"] = {"dask": version("dask"), "distributed": version("distributed")}
    return figures


# --- Ray ----------------------------------------------------------------------------------------


class Ray(Peer):
    """A local Ray instance with 4 CPUs (so 4 worker processes run tasks)."""

    def __init__(self):
        import ray

        self.ray = ray
        ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False, logging_level="warning")
        self.noop = ray.remote(num_cpus=1)(noop)
        log(f"ray: local, num_cpus={WORKERS}")

    def submit_many(self, n):
        return [self.noop.remote(i) for i in range(n)]

    def wait_all(self, handle, n):
        if self.ray.get(handle, timeout=120) != list(range(n)):
            raise RuntimeError("ray: wrong results")

    def one(self, i):
        return self.ray.get(self.noop.remote(i), timeout=10)

    def close(self):
        self.ray.shutdown()


def run_ray(args):
    figures = session(Ray, args, submit_meaningful=True)
    figures["workers"] = f"ray.init(num_cpus={WORKERS}), local"
    figures["version"] = version("ray")
    return figures


# --- driver -------------------------------------------------------------------------------------

RUNNERS = {"celery": run_celery, "dask": run_dask, "ray": run_ray}


def child(args):
    """Measures one peer in this process; prints its figures (or its error) as JSON on stdout."""
    # A SIGTERM from the parent (time limit) unwinds, so workers and servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{args.child}: stopped (time limit)"))
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # libraries that print go to stderr; only the JSON goes to stdout
    started = time.monotonic()
    try:
        figures = RUNNERS[args.child](args)
    except BaseException as e:  # noqa: BLE001 - reported, not raised
        traceback.print_exc()
        figures = {"error": f"{type(e).__name__}: {e}"}
    figures["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(figures), file=real_stdout, flush=True)


def run_peer(name, args):
    """Runs one peer in a child process of its own session, bounded by --timeout."""
    log(f"{name}: starting (time limit {args.timeout} s)")
    command = [sys.executable, os.path.abspath(__file__), "--child", name]
    command += ["--runs", str(args.runs), "--tasks", str(args.tasks), "--roundtrip", str(args.roundtrip)]
    command += ["--warmup", str(args.warmup), "--budget", str(args.budget), "--celery-pool", args.celery_pool]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {args.timeout} s", "seconds": round(time.monotonic() - started, 2)}
    finally:
        # Also when this process is stopped meanwhile (SIGTERM): the child's workers go too. Once
        # the child is gone, whatever it left in its process group goes as well.
        if process.poll() is None:
            stop_group(process)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
    line = next((l for l in reversed(out.splitlines()) if l.startswith("{")), None)
    if line is None:
        return {"error": f"exited with {process.returncode} and no result"}
    figures = json.loads(line)
    log(f"{name}: done in {figures.get('seconds')} s" + (f": {figures['error']}" if "error" in figures else ""))
    return figures


def stop_group(process):
    """SIGTERM to the child's process group (it cleans up), SIGKILL after 10 s."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.communicate(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs per peer (medians)")
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks of a fan-out")
    parser.add_argument("--roundtrip", type=int, default=100, help="round trips per run")
    parser.add_argument("--warmup", type=int, default=20, help="round trips of the warm-up")
    parser.add_argument(
        "--budget", type=float, default=1e9, help="seconds of fan-outs per peer: no new fan-out once over (at least 1)"
    )
    parser.add_argument("--timeout", type=float, default=120, help="time limit of each peer, seconds")
    parser.add_argument("--only", default=",".join(PEERS), help="comma-separated peers to run")
    parser.add_argument("--celery-pool", choices=("prefork", "solo"), default="prefork")
    parser.add_argument("--child", choices=PEERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("peers: stopped"))
    results = {}
    for name in args.only.split(","):
        results[name] = run_peer(name, args)
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
