"""labkit: the throwaway veth lab shared by every Python tool (tools/compare-nginx,
tools/compare-http, tools/record-traces, tools/inject-blind.py).

Two network namespaces joined by a veth pair; sirocco serves on the server end over AF_XDP,
nginx (when wanted) on a kernel-owned address of the same interface. Every process started
here dies with the script (PR_SET_PDEATHSIG), and everything created is undone by the
CLEANUP registry, whatever way the script ends (`run_main`).

Not a program: the scripts import it with
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import labkit
and set labkit.PROG (prefix of log lines) and labkit.VERBOSE.
"""

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time

PROG = "labkit"
VERBOSE = False

SIROCCO_ADDR = "198.18.0.2"
NGINX_ADDR = "198.18.0.3"
CLIENT_ADDR = "198.18.0.1"
PREFIX = 24
# The IPv6 twins, on the benchmarking prefix 2001:2::/48 (RFC 5180), as in src/lab/mod.rs.
SIROCCO_ADDR6 = "2001:2::2"
NGINX_ADDR6 = "2001:2::3"
CLIENT_ADDR6 = "2001:2::1"
PREFIX6 = 64
SERVER_IFACE = "veth-srv"
CLIENT_IFACE = "veth-cli"
MTU = "1500"

# Packages installed when their command is missing.
PACKAGES = {
    "nginx": "nginx",
    "wrk": "wrk",
    "ip": "iproute2",
    "ethtool": "ethtool",
    "taskset": "util-linux",
    "perf": "linux-perf",
    "nft": "nftables",
    "curl": "curl",
    "tcpdump": "tcpdump",
    "wget": "wget",
    "ab": "apache2-utils",
    "chromium": "chromium",
}


class Abort(Exception):
    """A failure with a message for the user (no traceback)."""


def log(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def debug(msg):
    if VERBOSE:
        log(msg)


def run(cmd, check=True, capture=True, timeout=600, **kw):
    debug("$ " + " ".join(cmd))
    try:
        p = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout, **kw)
    except FileNotFoundError:
        raise Abort(f"command not found: {cmd[0]}")
    except subprocess.TimeoutExpired:
        raise Abort(f"`{' '.join(cmd)}` did not finish within {timeout} s")
    if check and p.returncode != 0:
        err = (p.stderr or "").strip() if capture else ""
        raise Abort(f"`{' '.join(cmd)}` failed (exit {p.returncode}){': ' + err if err else ''}")
    return p


# ---------------------------------------------------------------------------------------------
# Children die with us, even on SIGKILL: PR_SET_PDEATHSIG survives the execs of `ip netns exec`
# and `taskset` (no set-uid binaries involved).

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _child_setup():
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # Our own session, so a terminal Ctrl-C reaches only us and we stop children in order.
    os.setsid()


# Sessions of the processes this script runs (each spawned child leads its own session).
OUR_SESSIONS = {os.getsid(0)}


def spawn(cmd, **kw):
    debug("$ " + " ".join(cmd) + " &")
    try:
        proc = subprocess.Popen(cmd, preexec_fn=_child_setup, **kw)
    except FileNotFoundError:
        raise Abort(f"command not found: {cmd[0]}")
    OUR_SESSIONS.add(proc.pid)
    return proc


def stop_process(proc, sig=signal.SIGTERM, timeout=10.0):
    """Signals `proc` and waits for it; SIGKILL after `timeout`. Returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# ---------------------------------------------------------------------------------------------
# Cleanup registry: everything we start or create is undone here, in reverse order.


class Cleanup:
    def __init__(self):
        self.actions = []

    def push(self, name, fn):
        self.actions.append((name, fn))
        return len(self.actions) - 1

    def pop(self, token):
        """Runs one registered action now and forgets it."""
        if token is None or token >= len(self.actions) or self.actions[token] is None:
            return
        name, fn = self.actions[token]
        self.actions[token] = None
        self._do(name, fn)

    def forget(self, token):
        """Forgets one registered action without running it."""
        if token is not None and token < len(self.actions):
            self.actions[token] = None

    def run_all(self):
        while self.actions:
            item = self.actions.pop()
            if item is not None:
                self._do(*item)

    @staticmethod
    def _do(name, fn):
        try:
            debug(f"cleanup: {name}")
            fn()
        except Exception as e:  # keep cleaning up
            log(f"cleanup of {name} failed: {e}")


CLEANUP = Cleanup()


def on_signal(signum, _frame):
    # Turn SIGINT/SIGTERM/SIGHUP (and SIGALRM, a run's deadline) into an exception, so
    # `finally` blocks and cleanup run.
    raise KeyboardInterrupt(f"signal {signum}")


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)


def run_main(main):
    """Runs `main()`, turns Abort into a message and exit code 1, Ctrl-C/SIGTERM into 130;
    always runs the cleanup registry. `main` may return an exit code. Does not return."""
    for s in SIGNALS:
        signal.signal(s, on_signal)
    code = 0
    try:
        code = main() or 0
    except Abort as e:
        log(f"error: {e}")
        code = 1
    except KeyboardInterrupt as e:
        if str(e) == f"signal {int(signal.SIGALRM)}":
            log("deadline of the whole run passed; cleaning up")
            code = 124
        else:
            log("interrupted; cleaning up")
            code = 130
    finally:
        # Ignore further Ctrl-C while cleaning up, so the lab is always removed.
        signal.alarm(0)
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        CLEANUP.run_all()
    sys.exit(code)


def require_root(what):
    if os.geteuid() != 0:
        raise Abort(f"must run as root (it creates network namespaces and attaches XDP "
                    f"programs{what}): try `sudo tools/{PROG}`")
    os.environ["PATH"] = sbin_path()


# ---------------------------------------------------------------------------------------------
# Tools


def sbin_path():
    path = os.environ.get("PATH", "")
    extra = [p for p in ("/usr/local/sbin", "/usr/sbin", "/sbin") if p not in path.split(":")]
    return ":".join([path] + extra) if extra else path


def ensure_tools(wanted):
    """Installs the packages (PACKAGES) of the commands in `wanted` that are missing."""
    missing = [t for t in wanted if not shutil.which(t, path=sbin_path())]
    if not missing:
        return
    pkgs = sorted({PACKAGES[t] for t in missing})
    if not shutil.which("apt-get"):
        raise Abort(f"missing {', '.join(missing)} and no apt-get to install {' '.join(pkgs)}")
    log(f"installing {' '.join(pkgs)} (missing: {', '.join(missing)})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], capture=False, env=env, stdout=subprocess.DEVNULL,
        timeout=600)
    # Keep the package from starting a system-wide nginx on port 80 of the host: a
    # policy-rc.d that denies service starts, only if none is in place, removed right after.
    policy = "/usr/sbin/policy-rc.d"
    made_policy = False
    if "nginx" in pkgs and not os.path.exists(policy):
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        made_policy = True
    try:
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + pkgs,
            capture=False, env=env, stdout=subprocess.DEVNULL, timeout=900)
    finally:
        if made_policy:
            os.unlink(policy)
    still = [t for t in wanted if not shutil.which(t, path=sbin_path())]
    if still:
        raise Abort(f"still missing after apt-get install: {', '.join(still)}")


def repo_root():
    here = os.path.dirname(os.path.realpath(__file__))
    root = os.path.dirname(here)
    if not os.path.exists(os.path.join(root, "Cargo.toml")):
        raise Abort(f"no Cargo.toml in {root}: the script must stay in the repo's tools/")
    return root


# ---------------------------------------------------------------------------------------------
# Addresses


def is_ipv6(addr):
    return ":" in addr


def url_host(addr):
    """`addr` as the host of a URL or a Host header: an IPv6 literal in brackets."""
    return f"[{addr}]" if is_ipv6(addr) else addr


def prefix_of(addr):
    """The lab's prefix length for `addr`'s family."""
    return PREFIX6 if is_ipv6(addr) else PREFIX


def cidr(addr):
    """`addr` with the lab's prefix length, as `--ip` and `ip addr add` take it."""
    return f"{addr}/{prefix_of(addr)}"


# ---------------------------------------------------------------------------------------------
# Lab


class Lab:
    """Namespaces `<name>-srv` and `<name>-cli`, joined by SERVER_IFACE/CLIENT_IFACE. The
    client end has CLIENT_ADDR and CLIENT_ADDR6; the server end carries `kernel_addrs`
    (addresses the kernel answers, e.g. nginx's, of either family) beside sirocco's (which
    sirocco answers itself over AF_XDP). Both ends have the IP MTU `mtu` (sirocco takes the
    interface's MTU unless told otherwise).

    IPv6 is on at both ends without duplicate address detection (accept_dad=0, addresses
    added `nodad`), and `create` returns once no address is tentative, as the Rust labs do
    (src/lab/veth.rs). The server end has no kernel link-local address (addr_gen_mode=1):
    the fe80:: address of its MAC is sirocco's."""

    def __init__(self, name, kernel_addrs=(NGINX_ADDR,), mtu=MTU):
        self.srv = f"{name}-srv"
        self.cli = f"{name}-cli"
        self.kernel_addrs = list(kernel_addrs)
        self.mtu = str(mtu)

    def _ipv6_setup(self, ns, dev, link_local):
        """IPv6 sysctls of `dev` in `ns`, before the link comes up (see the class comment)."""
        if not os.path.isdir("/proc/sys/net/ipv6"):
            raise Abort("the lab needs IPv6, and this kernel has it turned off "
                        "(no /proc/sys/net/ipv6: booted with ipv6.disable=1?)")
        settings = {"disable_ipv6": "0", "accept_dad": "0"}
        if not link_local:
            settings["addr_gen_mode"] = "1"
        # Network sysctls belong to the writer's namespace: write them from inside it.
        script = "".join(f"echo {v} > /proc/sys/net/ipv6/conf/{dev}/{k}\n"
                         for k, v in settings.items())
        run(["ip", "netns", "exec", ns, "sh", "-ec", script])

    def wait_ipv6(self, ns, dev, addr, timeout=5.0):
        """Waits until `addr` is on `dev` in `ns` and no IPv6 address there is tentative
        (with nodad, only until the kernel sees the link operational)."""
        deadline = time.time() + timeout
        while True:
            out = run(["ip", "-n", ns, "-6", "-o", "addr", "show", "dev", dev]).stdout
            if "dadfailed" in out:
                raise Abort(f"duplicate address detection failed on {dev} in {ns}: {out}")
            if f" {addr}/" in out and "tentative" not in out:
                return
            if time.time() > deadline:
                raise Abort(f"{addr} on {dev} in {ns} not usable after {timeout:g} s: {out}")
            time.sleep(0.02)

    def create(self):
        existing = run(["ip", "netns", "list"]).stdout.split()
        for ns in (self.srv, self.cli):
            if ns in existing:
                raise Abort(f"network namespace {ns} already exists")
        run(["ip", "netns", "add", self.srv])
        CLEANUP.push(f"netns {self.srv}", lambda: run(["ip", "netns", "del", self.srv], check=False))
        run(["ip", "netns", "add", self.cli])
        CLEANUP.push(f"netns {self.cli}", lambda: run(["ip", "netns", "del", self.cli], check=False))
        for ns in (self.srv, self.cli):
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", self.srv, "link", "add", SERVER_IFACE, "mtu", self.mtu, "type", "veth",
             "peer", "name", CLIENT_IFACE, "mtu", self.mtu, "netns", self.cli])
        self._ipv6_setup(self.srv, SERVER_IFACE, link_local=False)
        run(["ip", "-n", self.srv, "link", "set", SERVER_IFACE, "up"])
        self._ipv6_setup(self.cli, CLIENT_IFACE, link_local=True)
        run(["ip", "-n", self.cli, "addr", "add", f"{CLIENT_ADDR}/{PREFIX}", "dev", CLIENT_IFACE])
        run(["ip", "-n", self.cli, "-6", "addr", "add", f"{CLIENT_ADDR6}/{PREFIX6}",
             "dev", CLIENT_IFACE, "nodad"])
        run(["ip", "-n", self.cli, "link", "set", CLIENT_IFACE, "up"])
        # Without this the client kernel sends CHECKSUM_PARTIAL TCP that sirocco rightly drops.
        run(["ip", "netns", "exec", self.cli, "ethtool", "-K", CLIENT_IFACE, "tx", "off"])
        # Kernel-owned addresses beside sirocco's (sirocco's filter leaves them to the kernel).
        for addr in self.kernel_addrs:
            nodad = ["nodad"] if is_ipv6(addr) else []
            run(["ip", "-n", self.srv, "addr", "add", cidr(addr), "dev", SERVER_IFACE] + nodad)
        # Wait for both ends to be up (veth carrier), and IPv6 to be usable at both.
        deadline = time.time() + 5
        while time.time() < deadline:
            out = run(["ip", "-n", self.cli, "-o", "link", "show", CLIENT_IFACE]).stdout
            if "LOWER_UP" in out:
                break
            time.sleep(0.05)
        self.wait_ipv6(self.cli, CLIENT_IFACE, CLIENT_ADDR6)
        for addr in filter(is_ipv6, self.kernel_addrs):
            self.wait_ipv6(self.srv, SERVER_IFACE, addr)

    def offloads_off(self, features=("tso", "gso", "gro", "tx")):
        """Turns the ethtool `features` off on both ends, so that what crosses the link (and
        a capture of it) is real segments with real checksums, not super-packets."""
        for ns, dev in ((self.srv, SERVER_IFACE), (self.cli, CLIENT_IFACE)):
            args = [word for feature in features for word in (feature, "off")]
            run(["ip", "netns", "exec", ns, "ethtool", "-K", dev] + args)

    def set_loss(self, permille, transfer_only=False):
        """Drops `permille`/1000 of the TCP packets in each direction, at random, in the client
        namespace (nftables `numgen random`: this kernel has no netem). With `transfer_only`,
        only what carries a transfer is dropped: segments to the client (not SYN-ACKs) and the
        client's pure ACKs (not its SYN, nor its requests). 0 removes the rules."""
        run(self.in_cli(["nft", "delete", "table", "inet", "labkit_loss"]), check=False)
        if permille <= 0:
            return
        drop = f"numgen random mod 1000 < {permille} drop"
        if transfer_only:
            # A pure ACK is at most 80 bytes of IPv4 (20 + 20 + 40 of options), or an IPv6
            # payload of at most 60 (20 + 40 of options); a request is more.
            inbound = f"tcp flags & syn == 0 {drop}"
            outbound = (f"tcp flags & syn == 0 ip length <= 80 {drop}; "
                        f"tcp flags & syn == 0 ip6 length <= 60 {drop}")
        else:
            inbound = outbound = f"meta l4proto tcp {drop}"
        ruleset = f"""table inet labkit_loss {{
    chain input {{ type filter hook input priority 0; policy accept; {inbound}; }}
    chain output {{ type filter hook output priority 0; policy accept; {outbound}; }}
}}
"""
        run(self.in_cli(["nft", "-f", "-"]), input=ruleset)

    def steer_rx(self, ns, dev, cpu):
        """Steers the kernel's receive processing of `dev` in `ns` to CPU `cpu` (RPS on its one
        queue, `rps_cpus`), whatever CPU the frame was sent from; the old mask is put back at
        cleanup (before the lab goes). veth otherwise receives on the sending CPU."""
        path = f"/sys/class/net/{dev}/queues/rx-0/rps_cpus"
        # /sys is the namespace's own under `ip netns exec`.
        old = run(["ip", "netns", "exec", ns, "cat", path]).stdout.strip()
        run(["ip", "netns", "exec", ns, "sh", "-ec", f"echo {1 << int(cpu):x} > {path}"])
        CLEANUP.push(f"rps_cpus of {dev}", lambda: run(
            ["ip", "netns", "exec", ns, "sh", "-ec", f"echo {old} > {path}"], check=False))

    def thread_rx(self, ns, dev):
        """Gives `dev` in `ns` a threaded NAPI (GRO on, `threaded` 1): its receive processing,
        XDP included, then runs in a kernel thread `napi/<dev>-<id>` that can be pinned, instead
        of in the softirq of the sending CPU. Returns the pids of the new threads."""
        before = set(napi_threads())
        run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "on"])
        path = f"/sys/class/net/{dev}/threaded"
        run(["ip", "netns", "exec", ns, "sh", "-ec", f"echo 1 > {path}"])
        CLEANUP.push(f"threaded NAPI of {dev}", lambda: run(
            ["ip", "netns", "exec", ns, "sh", "-ec", f"echo 0 > {path}"], check=False))
        new = [pid for pid, comm in napi_threads().items()
               if pid not in before and comm.startswith(f"napi/{dev}"[:15])]
        if not new:
            raise Abort(f"no NAPI thread appeared for {dev} after `echo 1 > {path}`")
        return new

    def in_srv(self, cmd):
        return ["ip", "netns", "exec", self.srv] + cmd

    def in_cli(self, cmd):
        return ["ip", "netns", "exec", self.cli] + cmd


# A tiny HTTP/1.1 client run in the client namespace: fetches every file, prints name, status
# and sha256 of the body. Retries until the server answers or the deadline passes.
PROBE = r"""
import hashlib, socket, sys, time
host, names, deadline = sys.argv[1], sys.argv[2].split(","), time.time() + float(sys.argv[3])
header_host = f"[{host}]" if ":" in host else host
def get(name):
    s = socket.create_connection((host, 80), timeout=2)
    s.sendall(f"GET /{name} HTTP/1.1\r\nHost: {header_host}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1].decode()
    return status, body
for name in names:
    while True:
        try:
            status, body = get(name)
            break
        except (OSError, IndexError) as e:
            if time.time() > deadline:
                print(f"{name} unreachable {e!r}")
                sys.exit(1)
            time.sleep(0.1)
    print(name, status, hashlib.sha256(body).hexdigest())
"""


def probe(lab, addr, names, proc, what, hashes=None):
    """Waits until the server at `addr` answers a GET for each of `names`; with `hashes`
    (name -> sha256 hex), also checks that it served each file 200 and byte for byte."""
    cmd = lab.in_cli([sys.executable or "python3", "-c", PROBE, addr, ",".join(names), "10"])
    client = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    token = CLEANUP.push("start-up probe", lambda: stop_process(client, signal.SIGKILL, 2))
    try:
        deadline = time.time() + 30
        # Stop waiting as soon as the server exits (a rejected flag, a failed attach).
        while client.poll() is None and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
    finally:
        CLEANUP.pop(token)
    out, err = client.communicate()
    if proc.poll() is not None:
        raise Abort(f"{what} exited (code {proc.returncode}) during start-up")
    if client.returncode != 0:
        raise Abort(f"{what} at {addr} did not answer: {out.strip()} {err.strip()}")
    if hashes is None:
        return
    for line in out.splitlines():
        name, status, digest = line.split()
        if status != "200" or digest != hashes[name]:
            raise Abort(f"{what} served /{name} wrong: status {status}, sha256 {digest}, "
                        f"expected 200 and {hashes[name]}")


# ---------------------------------------------------------------------------------------------
# CPU time, from /proc (clock ticks of CLK_TCK)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_tree(pid):
    """`pid` and its descendants (nginx's master and its worker), those alive now."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return pids


def process_ticks(pids):
    """(utime, stime) of the processes `pids`, each with all its threads (ended ones too)."""
    utime = stime = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        utime += int(fields[11])  # field 14
        stime += int(fields[12])  # field 15
    return utime, stime


def napi_threads():
    """pid -> name of the kernel's NAPI threads (`napi/<dev>-<id>`, cut to 15 characters)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if comm.startswith("napi/"):
                out[int(entry)] = comm
    return out


def cpu_times(cpu):
    """/proc/stat's line for CPU `cpu`: {user, nice, system, idle, iowait, irq, softirq, steal}
    in ticks."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                return dict(zip(names, map(int, line.split()[1:9])))
    raise Abort(f"no cpu{cpu} in /proc/stat")


def softirq_counts(cpu, kinds=("NET_RX", "NET_TX", "TIMER")):
    """How many softirqs of `kinds` CPU `cpu` ran so far (/proc/softirqs)."""
    with open("/proc/softirqs") as f:
        cpus = f.readline().split()
        col = cpus.index(f"CPU{cpu}")
        out = {}
        for line in f:
            name, *counts = line.split()
            name = name.rstrip(":")
            if name in kinds:
                out[name] = int(counts[col])
    return out


# ---------------------------------------------------------------------------------------------
# Servers


class Server:
    """What sirocco and nginx share: a process started with `spawn` (registered for cleanup
    under `token`) whose output goes to the open file `self.output`."""

    proc = None

    @property
    def pid(self):
        return self.proc.pid  # ip netns exec and taskset exec: the pid is the server's own

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _stop_process(self):
        """Stops the process (SIGTERM, then SIGKILL); returns its exit code, None if it was
        not running."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        CLEANUP.forget(self.token)
        code = stop_process(proc, signal.SIGTERM)
        self.output.close()
        return code


class Sirocco(Server):
    """sirocco over AF_XDP on SERVER_IFACE at SIROCCO_ADDR, and with `ipv6` at SIROCCO_ADDR6
    too (`--ip` once per address; clients then use the IPv6 one). `extra` are more `serve`
    flags; `core` pins it with taskset (None: not pinned)."""

    name = "sirocco"

    def __init__(self, lab, binary, docroot, tmp, extra=(), core=None, ipv6=False):
        self.lab, self.binary, self.docroot, self.tmp = lab, binary, docroot, tmp
        self.extra, self.core = list(extra), core
        self.addrs = [SIROCCO_ADDR] + ([SIROCCO_ADDR6] if ipv6 else [])
        self.addr = self.addrs[-1]
        self.output = None
        self.log_path = os.path.join(self.tmp, "sirocco.log")
        self.last_output = ""

    def command(self):
        cmd = [self.binary, "serve", "--driver", "afxdp", "--iface", SERVER_IFACE]
        for addr in self.addrs:
            cmd += ["--ip", cidr(addr)]
        cmd += ["--root", self.docroot, "--stats-interval", "0"] + self.extra
        if self.core is not None:
            cmd = ["taskset", "-c", str(self.core)] + cmd
        return self.lab.in_srv(cmd)

    def start(self, names, hashes=None):
        """Starts sirocco and waits until it answers GET /<name> for each of `names` (with
        `hashes`: byte for byte, see `probe`)."""
        self.output = open(self.log_path, "a")
        self.output.write("----\n")
        self.output.flush()
        self.proc = spawn(self.command(), stdout=self.output, stderr=subprocess.STDOUT)
        self.token = CLEANUP.push("sirocco", self.stop)
        try:
            for addr in self.addrs:
                probe(self.lab, addr, names, self.proc, "sirocco", hashes)
        except Abort as e:
            self.stop()
            out = self.last_output.strip()
            raise Abort(f"{e}{': ' + out if out else ''}") from None

    def stop(self):
        """Stops sirocco; returns its exit code. Its output since start is in last_output."""
        if self.proc is None:
            return None
        code = self._stop_process()
        with open(self.log_path) as f:
            self.last_output = f.read().rsplit("----\n", 1)[-1]
        return code


class Nginx(Server):
    """nginx, one worker, listening on NGINX_ADDR:80 in the server namespace, and with `ipv6`
    on [NGINX_ADDR6]:80 too (clients then use the IPv6 one; the lab must carry both as
    kernel addresses), serving `docroot`. `http_conf` and `server_conf` are directives added
    to its http and server blocks; `core` pins the worker (None: not pinned)."""

    name = "nginx"

    def __init__(self, lab, docroot, tmp, http_conf="", server_conf="", core=None, ipv6=False):
        self.lab, self.docroot, self.core = lab, docroot, core
        self.addrs = [NGINX_ADDR] + ([NGINX_ADDR6] if ipv6 else [])
        self.addr = self.addrs[-1]
        listen = "".join(f"        listen {url_host(a)}:80 backlog=4096;\n" for a in self.addrs)
        self.dir = os.path.join(tmp, "nginx")
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "nginx.conf")
        d = self.dir
        affinity = f"worker_cpu_affinity {1 << int(core):b};\n" if core is not None else ""
        with open(self.conf, "w") as f:
            f.write(f"""# generated by tools/{PROG}
daemon off;
master_process on;
worker_processes 1;
{affinity}worker_rlimit_nofile 65536;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 8192;
    use epoll;
}}
http {{
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{_indent(http_conf, 4)}    server {{
{listen}        root {docroot};
{_indent(server_conf, 8)}    }}
}}
""")

    def start(self, names, hashes=None):
        p = run(self.lab.in_srv(["nginx", "-t", "-q", "-p", self.dir,
                                 "-e", f"{self.dir}/error.log", "-c", self.conf]), check=False)
        if p.returncode != 0:
            raise Abort(f"nginx -t rejected {self.conf}: {p.stderr.strip()}")
        self.output = open(os.path.join(self.dir, "stderr.log"), "a")
        cmd = ["nginx", "-p", self.dir, "-e", f"{self.dir}/error.log", "-c", self.conf]
        if self.core is not None:
            cmd = ["taskset", "-c", str(self.core)] + cmd
        cmd = self.lab.in_srv(cmd)
        self.proc = spawn(cmd, stdout=self.output, stderr=subprocess.STDOUT)
        self.token = CLEANUP.push("nginx", self.stop)
        for addr in self.addrs:
            probe(self.lab, addr, names, self.proc, "nginx", hashes)

    def stop(self):
        # SIGTERM is nginx's fast shutdown; the worker follows the master.
        return self._stop_process()


def _indent(text, n):
    """`text`'s lines indented by `n` spaces, each ending in a newline ("" for no text)."""
    return "".join((" " * n + line if line.strip() else "") + "\n"
                   for line in text.strip().splitlines())
