#!/usr/bin/env python3
"""The local executor's cgroup checks on a cgroup v2 kernel, as root inside the test VM that
.ci/cgroup-v2-vm.sh boots (unified hierarchy only, no systemd: this script's parent is PID 1,
in the root cgroup). The host shares /mnt/host: `execbox` (the release binary), this script and
`policies/`.

Each check prints `ok` or `FAIL` with what it measured; the exit code is the number of
failures (0: all passed). Sections:
  1. the kernel gives what the checks assume (cgroup2 only; memory, pids, cpu);
  2. `execbox run` (the CLI) from the root cgroup: memory, pids, cpu, wall limits, clean-up;
  3. `execbox serve` from the root cgroup: the same through the API, usage, socket memory,
     a sandbox's per-call cgroups, the cgroup layout while it runs, clean-up after it stops;
  4. `execbox serve` started inside a non-root cgroup that holds processes (v2's
     no-internal-processes rule: the service must move itself into a leaf);
  5. a cgroup that was not delegated the controllers: refused with a message naming it.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = Path("/mnt/host")
BIN = str(HOST / "execbox")
CG = Path("/sys/fs/cgroup")
MiB = 1 << 20
# Emulated CPUs are slow, and a guest charges CPU time to whatever runs while the host has
# descheduled it: every run not testing the wall or CPU limit gets this much of both.
# How far memory.current may pass memory.max for a moment (see the socket checks).
OVERSHOOT = MiB
SLOW = dict(wall_time_ms=120_000, cpu_time_ms=60_000)

failures = []


def section(title):
    print(f"\n== {title}", flush=True)


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{' — ' + detail if detail else ''}", flush=True)
    if not ok:
        failures.append(name)
    return ok


def cgroup_dirs():
    """Every cgroup directory, relative to the root."""
    return sorted(str(Path(d).relative_to(CG)) for d, _, _ in os.walk(CG) if Path(d) != CG)


def procs(d):
    try:
        return [int(p) for p in (d / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def stat(d, key):
    try:
        for line in (d / "memory.stat").read_text().splitlines():
            k, v = line.split()
            if k == key:
                return int(v)
    except (FileNotFoundError, ValueError):
        pass
    return 0


def read_int(p):
    try:
        return int(p.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return 0


# --- programs run in the sandbox -----------------------------------------------------------

MEMORY_HOG = """
chunks = []
for i in range(1024):
    chunks.append(b"\\x01" * (1 << 20))  # filled, so every page is charged
print("allocated", len(chunks), "MiB")
"""

# Holds 40 MiB and burns ~0.3 s of CPU: usage must show both.
USAGE = """
import time
block = b"\\x01" * (40 << 20)
t = time.process_time()
while time.process_time() - t < 0.3:
    pass
print("done", len(block) >> 20)
"""

# Forks children that stay alive until the next fork fails; prints how many it got.
FORKS = """
import os, time
kids, err = [], None
for _ in range(200):
    try:
        pid = os.fork()
    except OSError as e:
        err = e.errno
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
print(len(kids), err)
"""

SPIN = "while True:\n    pass\n"
SLEEP = "import time\ntime.sleep(600)\n"

# Opens loopback TCP connections and writes to each without reading until the write would
# block, so the data sits in kernel socket buffers, until 96 MiB are queued; then holds them
# while the checker samples memory.stat. Prints how many bytes it queued (if it lives to print).
SOCKETS = """
import socket, time
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1024)
pairs, total, err = [], 0, None
chunk = b"x" * 65536
try:
    while total < 96 << 20:
        c = socket.create_connection(srv.getsockname())
        s, _ = srv.accept()
        c.setblocking(False)
        pairs.append((c, s))
        while True:
            try:
                total += c.send(chunk)
            except BlockingIOError:
                break
except OSError as e:
    err = e.strerror
print("queued", total, "bytes in", len(pairs), "connections", "stopped by:", err, flush=True)
time.sleep(2)
"""


# --- the CLI ---------------------------------------------------------------------------------

def write_policies(dest):
    """The repo's policies plus one per limit under test (the CLI takes limits from a policy)."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in (HOST / "policies").glob("*.toml"):
        (dest / p.name).write_text(p.read_text())
    base = dict(wall_time_ms=SLOW["wall_time_ms"], cpu_time_ms=SLOW["cpu_time_ms"], memory_bytes=256 * MiB, pids=64, output_bytes=MiB, disk_bytes=64 * MiB)
    special = {
        "v2slow": {},
        "v2mem": dict(memory_bytes=64 * MiB),
        "v2pids": dict(pids=16),
        "v2cpu": dict(cpu_time_ms=1000),
        "v2wall": dict(wall_time_ms=3000),
    }
    for name, over in special.items():
        limits = {**base, **over}
        body = "\n".join(f"{k} = {v}" for k, v in limits.items())
        (dest / f"{name}.toml").write_text(
            f'description = "cgroup v2 VM check"\nexecutors = ["local"]\nnetwork = "none"\nopen_files = 256\n\n'
            f"[defaults]\n{body}\n\n[maxima]\n{body}\n\n[compile]\n{body}\n")


def cli(policy, code, data_dir):
    env = dict(os.environ, EXECBOX_POLICIES="/tmp/policies", EXECBOX_DOCKER__ENABLED="false")
    t = time.monotonic()
    p = subprocess.run([BIN, "run", "--language", "python", "--policy", policy, "--data-dir", data_dir, "-"],
                       input=code.encode(), capture_output=True, env=env, timeout=300)
    return p.returncode, p.stdout.decode(errors="replace").strip(), p.stderr.decode(errors="replace").strip(), time.monotonic() - t


def cli_section():
    section("2. execbox run (CLI) from the root cgroup")
    write_policies(Path("/tmp/policies"))
    data = "/tmp/cli-data"
    before = cgroup_dirs()

    rc, out, err, secs = cli("v2slow", "print(6 * 7)\n", data)
    check("cli: a plain run prints its output and exits 0", rc == 0 and out == "42", f"exit {rc}, stdout {out!r}, {secs:.1f} s {err[-300:]}")

    rc, out, err, _ = cli("v2mem", MEMORY_HOG, data)
    check("cli: memory hog under 64 MiB is stopped as memory_limit (exit 137)",
          rc == 137 and "memory limit" in err and "allocated" not in out, f"exit {rc}, stderr {err[-200:]!r}")

    rc, out, err, _ = cli("v2pids", FORKS, data)
    n, errno = (out.split() + ["", ""])[:2]
    check("cli: forks under pids=16 fail with EAGAIN before 16 processes",
          rc == 0 and n.isdigit() and 0 < int(n) < 16 and errno == "11", f"exit {rc}, {n} children, errno {errno} {err[-200:]}")

    rc, out, err, secs = cli("v2cpu", SPIN, data)
    check("cli: a CPU spin under cpu_time_ms=1000 is stopped as cpu_limit (exit 152)",
          rc == 152 and "CPU time limit" in err, f"exit {rc} after {secs:.1f} s, stderr {err[-200:]!r}")

    rc, out, err, secs = cli("v2wall", SLEEP, data)
    check("cli: a sleeper under wall_time_ms=3000 is killed as timeout (exit 124)",
          rc == 124 and 3 <= secs < 60, f"exit {rc} after {secs:.1f} s")

    after = cgroup_dirs()
    left = [d for d in after if d not in before and d != "execbox"]
    check("cli: no run or instance cgroup is left behind", not left, f"new cgroups: {left}")


# --- the service -----------------------------------------------------------------------------

class Service:
    def __init__(self, instance, port, cgroup=None):
        self.instance, self.port = instance, port
        self.url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, EXECBOX_DOCKER__ENABLED="false", EXECBOX_INSTANCE=instance,
                   EXECBOX_LOCAL__WARM_SANDBOXES="1", EXECBOX_LOG="warn")
        join = (lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid()))) if cgroup else None
        self.p = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", f"/tmp/svc-{instance}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=join)
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.p.stderr), daemon=True).start()
        line = self.p.stdout.readline().decode()
        self.up = "listening" in line
        if not self.up:
            self.p.wait(timeout=30)

    def log(self):
        return b"".join(self.stderr).decode(errors="replace")[-1500:]

    def request(self, method, path, body=None, timeout=300):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def run(self, code, path="/v1/execute", **limits):
        limits = {**SLOW, **limits}
        status, body = self.request("POST", path, {"language": "python", "code": code, "limits": limits})
        if status != 200:
            return {"status": f"http {status}", "error": body, "usage": {}}
        return body

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait()


def describe(r):
    u = r.get("usage", {})
    return (f"status {r.get('status')}, cpu {u.get('cpu_time_ms')} ms, peak {u.get('peak_memory_bytes', 0) / MiB:.1f} MiB, "
            f"wall {u.get('wall_time_ms')} ms{', error ' + json.dumps(r['error']) if 'error' in r else ''}")


def sample_sock(instance_dir, stop, out):
    """Largest `sock` and memory.current of any run cgroup under `instance_dir` until `stop`."""
    while not stop.is_set():
        for d in instance_dir.glob("*/"):
            out["sock"] = max(out["sock"], stat(d, "sock"))
            out["current"] = max(out["current"], read_int(d / "memory.current"))
        time.sleep(0.05)


def run_checks(svc, label, full):
    inst = svc.instance_dir
    r = svc.run("print(6 * 7)\n")
    check(f"{label}: a plain run", r.get("status") == "ok" and r.get("stdout") == "42\n", describe(r))

    r = svc.run(USAGE)
    u = r.get("usage", {})
    check(f"{label}: usage of a 40 MiB, 0.3 s CPU program is reported",
          r.get("status") == "ok" and 300 <= u.get("cpu_time_ms", 0) < SLOW["cpu_time_ms"] and 40 * MiB <= u.get("peak_memory_bytes", 0) < 256 * MiB,
          describe(r))

    r = svc.run(MEMORY_HOG, memory_bytes=64 * MiB)
    peak = r.get("usage", {}).get("peak_memory_bytes", 0)
    check(f"{label}: memory hog under 64 MiB ends as memory_limit, peak within the limit",
          r.get("status") == "memory_limit" and 32 * MiB <= peak <= 64 * MiB, describe(r))
    if not full:
        return

    r = svc.run(FORKS, pids=16)
    n, errno = (r.get("stdout", "").split() + ["", ""])[:2]
    check(f"{label}: forks under pids=16 fail with EAGAIN before 16 processes",
          r.get("status") == "ok" and n.isdigit() and 0 < int(n) < 16 and errno == "11", f"{n} children, errno {errno}; {describe(r)}")

    r = svc.run(SPIN, cpu_time_ms=1000)
    cpu = r.get("usage", {}).get("cpu_time_ms", 0)
    check(f"{label}: CPU spin under cpu_time_ms=1000 ends as cpu_limit with ≥ 1000 ms used",
          r.get("status") == "cpu_limit" and 1000 <= cpu < 5000, describe(r))

    r = svc.run(SLEEP, wall_time_ms=3000)
    wall = r.get("usage", {}).get("wall_time_ms", 0)
    check(f"{label}: sleeper under wall_time_ms=3000 ends as timeout", r.get("status") == "timeout" and 3000 <= wall < 30_000, describe(r))

    # Socket memory: on v2, TCP buffers are charged to the run's memory.max. First, with a
    # large limit, the program can queue far more than 64 MiB (so the check below can fail).
    # Under the limit, usage may still pass memory.max for a moment by a few pages: the kernel
    # lets atomic charges (a packet received in softirq, GFP_ATOMIC) and forced ones
    # (sk_forced_mem_schedule, __GFP_NOFAIL) through over the limit, as cgroup-v2.rst says of
    # memory.max ("the usage may go over the limit temporarily"). OVERSHOOT bounds that; the
    # control queues 100 MiB and more, so the check still tells a charged buffer from an
    # uncharged one.
    for limit, want_over in ((1024 * MiB, True), (64 * MiB, False)):
        seen, stop = {"sock": 0, "current": 0}, threading.Event()
        sampler = threading.Thread(target=sample_sock, args=(inst, stop, seen))
        sampler.start()
        r = svc.run(SOCKETS, memory_bytes=limit)
        stop.set()
        sampler.join()
        out = r.get("stdout", "").strip()
        queued = int(out.split()[1]) if out.startswith("queued") else None
        detail = (f"program: {out or '(killed before printing)'}; largest memory.stat sock {seen['sock'] / MiB:.1f} MiB, "
                  f"memory.current {seen['current'] / MiB:.1f} MiB ({seen['current'] - limit:+d} bytes over memory.max); {describe(r)}")
        if want_over:
            check(f"{label}: unconstrained, loopback TCP buffers hold > 64 MiB (the control)",
                  queued is not None and queued > 64 * MiB and seen["sock"] > 64 * MiB, detail)
        else:
            check(f"{label}: under memory 64 MiB, TCP socket memory stays within the limit",
                  seen["sock"] <= 64 * MiB + OVERSHOOT and seen["current"] <= 64 * MiB + OVERSHOOT
                  and (queued is None or queued <= 64 * MiB)
                  and r.get("status") in ("ok", "memory_limit"), detail)

    # A sandbox: its calls get per-call cgroups under the same instance.
    status, sb = svc.request("POST", "/v1/sandboxes", {"ttl_seconds": 600})
    if check(f"{label}: create a sandbox", status in (200, 201) and "id" in (sb or {}), f"http {status} {sb}"):
        path = f"/v1/sandboxes/{sb['id']}/execute"
        r = svc.run("open('kept.txt', 'w').write('x')\nprint('wrote')\n", path=path)
        check(f"{label}: sandbox call runs", r.get("status") == "ok", describe(r))
        r = svc.run(MEMORY_HOG, path=path, memory_bytes=64 * MiB)
        check(f"{label}: sandbox call over 64 MiB ends as memory_limit", r.get("status") == "memory_limit", describe(r))
        r = svc.run("print(open('kept.txt').read())\n", path=path)
        check(f"{label}: sandbox keeps its files across calls", r.get("stdout") == "x\n", describe(r))
        status, _ = svc.request("DELETE", f"/v1/sandboxes/{sb['id']}")
        check(f"{label}: delete the sandbox", status in (200, 204), f"http {status}")


def layout_checks(svc, label, base):
    """While the service runs: where it is, and that no cgroup with controllers for its children
    holds processes (v2's no-internal-processes rule)."""
    inst = base / "execbox" / svc.instance
    svc.instance_dir = inst
    status, ready = svc.request("GET", "/readyz")
    cg = (ready or {}).get("executors", {}).get("local", {}).get("features", {}).get("cgroup") or {}
    check(f"{label}: /readyz reports cgroup v2 with memory, pids and cpu accounting",
          status == 200 and cg.get("version") == "v2" and cg.get("memory") and cg.get("pids") and cg.get("cpu_accounting"),
          f"http {status}, cgroup {json.dumps(cg)}")
    check(f"{label}: instance cgroup {inst.relative_to(CG)} exists", inst.is_dir())
    # Let the warm sandbox come up, so the instance has a child holding processes.
    for _ in range(100):
        if any(procs(d) for d in inst.glob("*/")):
            break
        time.sleep(0.1)
    holders = [d for d in [base, base / "execbox", inst] if d != CG and procs(d)]
    check(f"{label}: no process sits in a cgroup that hands controllers to children",
          not holders, f"processes in {[str(d.relative_to(CG)) for d in holders]}")
    for d in [base, base / "execbox", inst]:
        sc = (d / "cgroup.subtree_control").read_text().split() if d.is_dir() else []
        check(f"{label}: {str(d.relative_to(CG)) if d != CG else '/'} delegates memory and pids",
              "memory" in sc and "pids" in sc, f"subtree_control {sc}")
    runs = [d for d in inst.glob("*/") if procs(d)]
    check(f"{label}: a warm sandbox waits in its own run cgroup with limits set",
          bool(runs) and all(read_int(d / "pids.max") > 0 for d in runs), f"{[d.name for d in runs]}")
    own = Path(f"/proc/{svc.p.pid}/cgroup").read_text().strip()
    return own


def service_root_section():
    section("3. execbox serve from the root cgroup")
    before = cgroup_dirs()
    svc = Service("v2vm-root", 18080)
    if not check("serve (root cgroup): starts with the docker executor disabled", svc.up, "" if svc.up else svc.log()):
        return
    own = layout_checks(svc, "serve (root cgroup)", CG)
    check("serve (root cgroup): the service stays in the root cgroup (exempt from the rule)", own == "0::/", own)
    run_checks(svc, "serve (root cgroup)", full=True)
    rc = svc.stop()
    check("serve (root cgroup): stops cleanly on SIGTERM", rc == 0, f"exit {rc} {svc.log()[-500:] if rc else ''}")
    left = [d for d in cgroup_dirs() if d not in before]
    check("serve (root cgroup): no cgroup is left behind after it stops", not left, f"left: {left}")


def service_nested_section():
    section("4. execbox serve inside a non-root cgroup that holds processes")
    before = cgroup_dirs()
    base = CG / "ci-svc"
    base.mkdir()
    for c in ("memory", "pids", "cpu"):
        root_sc = (CG / "cgroup.subtree_control").read_text().split()
        if c not in root_sc:
            (CG / "cgroup.subtree_control").write_text(f"+{c}")
    # Another process in the same cgroup, as under a service manager's unit.
    neighbour = subprocess.Popen(["sleep", "600"], preexec_fn=lambda: (base / "cgroup.procs").write_text(str(os.getpid())))
    svc = Service("v2vm-nested", 18081, cgroup=base)
    if check("serve (non-root cgroup): starts", svc.up, "" if svc.up else svc.log()):
        own = layout_checks(svc, "serve (non-root cgroup)", base)
        check("serve (non-root cgroup): the service moved itself into the leaf ci-svc/execbox-service",
              own == "0::/ci-svc/execbox-service", own)
        run_checks(svc, "serve (non-root cgroup)", full=False)
        rc = svc.stop()
        check("serve (non-root cgroup): stops cleanly on SIGTERM", rc == 0, f"exit {rc}")
        left = [d for d in cgroup_dirs() if d not in before and d not in ("ci-svc", "ci-svc/execbox-service")]
        check("serve (non-root cgroup): only the service's own leaf is left after it stops", not left, f"left: {left}")
        leaf = base / "execbox-service"
        check("serve (non-root cgroup): the leaf holds the neighbour, nothing of execbox",
              procs(leaf) == [neighbour.pid], f"procs {procs(leaf)}, neighbour {neighbour.pid}")
        # A CLI started beside the neighbour (as from a shell that was moved into the leaf)
        # manages ci-svc again: it must not nest a new leaf below the leaf.
        seen = []
        watch = threading.Event()
        def spy():
            while not watch.is_set():
                seen.extend(d for d in cgroup_dirs() if d not in seen)
                time.sleep(0.05)
        spy_thread = threading.Thread(target=spy)
        spy_thread.start()
        p = subprocess.run([BIN, "run", "--language", "python", "--policy", "v2slow", "--data-dir", "/tmp/cli-leaf", "-"],
                           input=b"print(6 * 7)\n", capture_output=True, timeout=300,
                           env=dict(os.environ, EXECBOX_DOCKER__ENABLED="false", EXECBOX_POLICIES="/tmp/policies"),
                           preexec_fn=lambda: (leaf / "cgroup.procs").write_text(str(os.getpid())))
        watch.set()
        spy_thread.join()
        made = [d for d in seen if d not in before]
        check("cli in the service leaf: runs, with its instance under ci-svc/execbox, not below the leaf",
              p.returncode == 0 and any(d.startswith("ci-svc/execbox/cli-") for d in made)
              and not any(d.startswith("ci-svc/execbox-service/") for d in made),
              f"exit {p.returncode}, cgroups made {made} {p.stderr.decode(errors='replace')[-300:]}")
        left = [d for d in cgroup_dirs() if d not in before and d not in ("ci-svc", "ci-svc/execbox-service")]
        check("cli in the service leaf: leaves nothing behind", not left, f"left: {left}")
    neighbour.kill()
    neighbour.wait()
    for d in sorted((d for d in cgroup_dirs() if d.startswith("ci-svc")), key=len, reverse=True):
        (CG / d).rmdir()


def undelegated_section():
    section("5. a cgroup without the controllers: refused, not degraded")
    outer = CG / "ci-bare"
    inner = outer / "inner"
    inner.mkdir(parents=True)  # ci-bare's subtree_control is empty: inner gets no controllers
    env = dict(os.environ, EXECBOX_DOCKER__ENABLED="false", EXECBOX_INSTANCE="v2vm-bare")
    p = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:18082", "--data-dir", "/tmp/svc-bare"], capture_output=True, env=env,
                       timeout=120, preexec_fn=lambda: (inner / "cgroup.procs").write_text(str(os.getpid())))
    err = p.stderr.decode(errors="replace").strip()
    check("serve (undelegated cgroup): refuses to start, naming the cgroup and the remedy",
          p.returncode != 0 and "/sys/fs/cgroup/ci-bare/inner" in err and "no memory controller" in err and "allow_degraded" in err,
          f"exit {p.returncode}: {err[-400:]!r}")
    check("serve (undelegated cgroup): creates nothing under it", list(inner.glob("*/")) == [], str(list(inner.glob("*/"))))
    inner.rmdir()
    outer.rmdir()


def main():
    t0 = time.monotonic()
    section("1. the kernel")
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    v1 = [m for m in mounts if m.split()[2] == "cgroup"]
    root_fs = [m.split()[2] for m in mounts if m.split()[1] == "/sys/fs/cgroup"]
    controllers = (CG / "cgroup.controllers").read_text().split()
    check("cgroup2 at /sys/fs/cgroup and no v1 hierarchy", root_fs == ["cgroup2"] and not v1, f"{root_fs}, v1 mounts {len(v1)}")
    check("memory, pids and cpu controllers offered", {"memory", "pids", "cpu"} <= set(controllers), " ".join(controllers))
    check("this script runs in the root cgroup", Path("/proc/self/cgroup").read_text().strip() == "0::/")
    print(f"     kernel {os.uname().release}, {os.cpu_count()} CPUs", flush=True)

    for part in (cli_section, service_root_section, service_nested_section, undelegated_section):
        t = time.monotonic()
        try:
            part()
        except Exception as e:  # a crash in one section must not hide the others' results
            check(f"{part.__name__} ran to the end", False, f"{type(e).__name__}: {e}")
        print(f"     ({time.monotonic() - t:.1f} s)", flush=True)

    section(f"summary: {len(failures)} failed ({time.monotonic() - t0:.0f} s)")
    for f in failures:
        print(f"FAIL {f}")
    return min(len(failures), 100)


if __name__ == "__main__":
    sys.exit(main())
