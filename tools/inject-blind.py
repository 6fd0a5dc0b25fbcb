#!/usr/bin/env python3
"""inject-blind: blind in-window injections against a live keep-alive connection to sirocco.

RFC 5961 makes blind attacks on a TCP connection hard: an RST or a SYN whose sequence number is
in the receive window but not exactly RCV.NXT draws a (rate-limited) challenge ACK and the
connection lives; a segment whose acknowledgment number is outside the acceptable range is
dropped, data included. This script checks exactly that against a real server, from the client
side of a lab:

  1. It opens a TCP connection to the server with the kernel's stack, fetches PATH once (keep-
     alive) and keeps the connection open. A scapy sniffer on the client's interface follows the
     connection, so the script knows the 4-tuple, the server's RCV.NXT (the client's next
     sequence number), its SND.NXT, its receive window and the timestamps in use.
  2. For each case it forges one segment on that 4-tuple and sends it on the interface, as a
     blind attacker who guessed the ports and a sequence number in the window would:
       rst              RST at RCV.NXT+1536 (in the window, not exact)
       syn              SYN at RCV.NXT+1024 (in the window), no ACK
       ack-ahead        pure ACK, acknowledgment SND.NXT+2^30 (data never sent)
       ack-behind       pure ACK, acknowledgment SND.NXT-2^30 (far below SND.UNA)
       data-ack-ahead   10 bytes of data at RCV.NXT with the acknowledgment SND.NXT+2^30
       data-ack-behind  10 bytes of data at RCV.NXT with the acknowledgment SND.NXT-2^30
       rst-exact        RST at exactly RCV.NXT: the control case, which must reset the
                        connection (RFC 5961 §3.2); it shows that forged segments reach the
                        connection as valid ones, so that a connection surviving the others
                        is the server's doing, not a bad checksum's
     then records what the server sent back within --gap seconds (a challenge ACK is a pure ACK
     carrying <SEQ=SND.NXT><ACK=RCV.NXT>), and fetches PATH again on the same connection: the
     connection survived if that answer is 200 and byte-exact. Injected data that the server
     accepted would be spliced in front of that request, so it fails too. When a case killed
     the connection, the next case runs on a new one (rst-exact passes when it does kill it).
  3. It prints one line per case and, with --json, a last line `RESULT {...}` with everything.
     Exit status: 0 when every case passed (the connection survived; a challenge ACK for rst and
     syn), 1 when one did not, 2 when the run itself failed.

Two ways to run it (as root):

  tools/inject-blind.py --binary target/release/sirocco
      builds a throwaway veth lab (tools/labkit.py), serves a small document root with that
      sirocco over AF_XDP, runs the cases from the client namespace and removes the lab;

  ip netns exec <client-ns> tools/inject-blind.py --client --server 198.18.0.2 \\
          --iface veth-cli --path /window-64k.bin --expect FILE
      runs the cases in the current namespace against a server someone else started (the lab
      test tests/tests/lab_injection.rs does this).

Needs scapy (Debian: python3-scapy); the interpreter must be one that sees it.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

# The TTL of every forged frame: the sniffer tells them from the kernel's (TTL 64) by it.
FORGED_TTL = 13
# Far outside any acceptable range of acknowledgment numbers, ahead or behind.
FAR = 1 << 30
CASES = ["rst", "syn", "ack-ahead", "ack-behind", "data-ack-ahead", "data-ack-behind",
         "rst-exact"]
# Cases that RFC 5961 answers with a challenge ACK (sections 3.2 and 4.2).
CHALLENGED = {"rst", "syn"}
# Cases that must reset the connection.
FATAL = {"rst-exact"}
INJECTED_DATA = b"XINJECTEDX"


def log(msg):
    print(f"inject-blind: {msg}", file=sys.stderr, flush=True)


class Failure(Exception):
    """The run could not be carried out (not a failed case)."""


def seq_after(a, b):
    """a > b in sequence space (RFC 1982 style, 32 bits)."""
    return a != b and ((a - b) & 0xFFFFFFFF) < (1 << 31)


def add(a, n):
    return (a + n) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# Following the connection


class Tracker:
    """Fed every frame the sniffer sees on the interface; keeps, per client port, what a blind
    attacker would have to guess about that connection, and every frame the server sent."""

    def __init__(self, server_ip):
        self.server_ip = server_ip
        self.lock = threading.Lock()
        self.flows = {}  # client port -> state
        self.from_server = []  # (time, client port, summary dict)

    def _flow(self, port):
        return self.flows.setdefault(port, {
            "client_port": port,
            "client_nxt": None,  # the server's RCV.NXT
            "server_nxt": None,  # the server's SND.NXT
            "client_mac": None, "server_mac": None,
            "client_tsval": None, "server_tsval": None,
            "server_wscale": 0, "server_window": None,
        })

    def feed(self, pkt):
        from scapy.all import IP, TCP, Ether

        if not (pkt.haslayer(IP) and pkt.haslayer(TCP) and pkt.haslayer(Ether)):
            return
        ip, tcp = pkt[IP], pkt[TCP]
        if ip.ttl == FORGED_TTL:
            return
        payload = len(tcp.payload)
        flags = int(tcp.flags)
        syn, fin = flags & 0x02, flags & 0x01
        end = add(tcp.seq, payload + (1 if syn else 0) + (1 if fin else 0))
        opts = dict((k, v) for k, v in tcp.options if isinstance(k, str))
        with self.lock:
            if ip.dst == self.server_ip and tcp.dport == 80:
                f = self._flow(tcp.sport)
                f["client_mac"], f["server_mac"] = pkt[Ether].src, pkt[Ether].dst
                if f["client_nxt"] is None or seq_after(end, f["client_nxt"]):
                    f["client_nxt"] = end
                if "Timestamp" in opts:
                    f["client_tsval"] = opts["Timestamp"][0]
            elif ip.src == self.server_ip and tcp.sport == 80:
                f = self._flow(tcp.dport)
                f["server_mac"] = pkt[Ether].src
                if f["server_nxt"] is None or seq_after(end, f["server_nxt"]):
                    f["server_nxt"] = end
                if syn and "WScale" in opts:
                    f["server_wscale"] = opts["WScale"]
                if "Timestamp" in opts:
                    f["server_tsval"] = opts["Timestamp"][0]
                # The SYN-ACK's window is never scaled (RFC 7323 §2.2).
                f["server_window"] = tcp.window << (0 if syn else f["server_wscale"])
                self.from_server.append((time.monotonic(), tcp.dport, {
                    "flags": str(tcp.flags), "seq": tcp.seq, "ack": tcp.ack, "len": payload,
                }))

    def state(self, port):
        with self.lock:
            return dict(self._flow(port))

    def server_frames_since(self, port, t):
        with self.lock:
            return [s for (at, p, s) in self.from_server if at >= t and p == port]


# ---------------------------------------------------------------------------------------------
# HTTP over the kernel's socket


class Connection:
    def __init__(self, server, timeout):
        self.server = server
        self.sock = socket.create_connection((server, 80), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    @property
    def port(self):
        return self.sock.getsockname()[1]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def fetch(self, path, expected):
        """GET path on this connection. Returns None when the answer is 200 and byte-exact,
        otherwise what went wrong."""
        try:
            self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.server}\r\n\r\n".encode())
            while b"\r\n\r\n" not in self.buf:
                self._more()
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "?"
            length = None
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length is None:
                return f"status {status}, no Content-Length: {lines[0]!r}"
            while len(self.buf) < length:
                self._more()
            body, self.buf = self.buf[:length], self.buf[length:]
        except socket.timeout:
            return "no answer (timed out)"
        except ConnectionResetError:
            return "connection reset"
        except (OSError, ValueError, IndexError) as e:
            return f"{type(e).__name__}: {e}"
        if status != "200":
            return f"status {status}"
        if body != expected:
            first = next((i for i, (a, b) in enumerate(zip(body, expected)) if a != b), None)
            return f"body differs ({len(body)} bytes, expected {len(expected)}, first at {first})"
        return None

    def _more(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionResetError("closed by the server")
        self.buf += chunk


# ---------------------------------------------------------------------------------------------
# Forged segments


def forge(case, st, server_ip, client_ip):
    from scapy.all import IP, TCP, Ether, Raw

    rcv_nxt, snd_nxt = st["client_nxt"], st["server_nxt"]
    opts = []
    if st["client_tsval"] is not None and not case.startswith("rst"):
        opts = [("NOP", None), ("NOP", None),
                ("Timestamp", (add(st["client_tsval"], 1), st["server_tsval"] or 0))]
    payload = b""
    if case == "rst":
        seq, ack, flags = add(rcv_nxt, 1536), 0, "R"
    elif case == "rst-exact":
        seq, ack, flags = rcv_nxt, 0, "R"
    elif case == "syn":
        seq, ack, flags = add(rcv_nxt, 1024), 0, "S"
        opts = [("MSS", 1460)] + opts
    elif case == "ack-ahead":
        seq, ack, flags = rcv_nxt, add(snd_nxt, FAR), "A"
    elif case == "ack-behind":
        seq, ack, flags = rcv_nxt, add(snd_nxt, -FAR), "A"
    elif case == "data-ack-ahead":
        seq, ack, flags, payload = rcv_nxt, add(snd_nxt, FAR), "PA", INJECTED_DATA
    elif case == "data-ack-behind":
        seq, ack, flags, payload = rcv_nxt, add(snd_nxt, -FAR), "PA", INJECTED_DATA
    else:
        raise Failure(f"unknown case {case}")
    segment = TCP(sport=st["client_port"], dport=80, seq=seq, ack=ack, flags=flags,
                  window=64240, options=opts)
    frame = (Ether(src=st["client_mac"], dst=st["server_mac"])
             / IP(src=client_ip, dst=server_ip, ttl=FORGED_TTL) / segment)
    if payload:
        frame = frame / Raw(payload)
    return frame, {"flags": flags, "seq": seq, "ack": ack, "len": len(payload)}


def is_challenge_ack(reply, st):
    """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, no data."""
    return reply["flags"] == "A" and reply["len"] == 0 and reply["ack"] == st["client_nxt"]


# ---------------------------------------------------------------------------------------------
# The client side: runs in the client namespace


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise Failure(f"timed out waiting for {what}")
        time.sleep(0.01)


def settle(tracker, conn):
    """Waits until the sniffer has seen the connection's latest segments both ways."""
    time.sleep(0.2)
    st = tracker.state(conn.port)
    if st["client_nxt"] is None or st["server_nxt"] is None or st["server_mac"] is None:
        raise Failure(f"the sniffer did not see connection :{conn.port} (state {st})")
    return st


def run_client(args):
    try:
        from scapy.all import AsyncSniffer, conf, get_if_addr, sendp
    except ImportError as e:
        raise Failure(f"scapy is not importable by {sys.executable} ({e}): install "
                      "python3-scapy and run this with the interpreter it installs for")
    conf.verb = 0
    with open(args.expect, "rb") as f:
        expected = f.read()
    client_ip = get_if_addr(args.iface)
    cases = args.cases.split(",") if args.cases else CASES
    for case in cases:
        if case not in CASES:
            raise Failure(f"unknown case {case}; known: {', '.join(CASES)}")

    tracker = Tracker(args.server)
    started = threading.Event()
    sniffer = AsyncSniffer(iface=args.iface, store=False, prn=tracker.feed,
                           started_callback=started.set)
    sniffer.start()
    if not started.wait(5):
        raise Failure(f"the sniffer on {args.iface} did not start")

    results = []
    conn = None
    connections = 0
    try:
        for case in cases:
            if conn is None:
                conn = Connection(args.server, args.timeout)
                connections += 1
                problem = conn.fetch(args.path, expected)
                if problem:
                    raise Failure(f"the first fetch on a new connection failed: {problem}")
            st = settle(tracker, conn)
            frame, forged = forge(case, st, args.server, client_ip)
            sent_at = time.monotonic()
            sendp(frame, iface=args.iface, verbose=False)
            time.sleep(args.gap)
            replies = tracker.server_frames_since(conn.port, sent_at)
            challenged = any(is_challenge_ack(r, st) for r in replies)
            problem = conn.fetch(args.path, expected)
            survived = problem is None
            if case in FATAL:
                ok = not survived
            else:
                ok = survived and (challenged or case not in CHALLENGED)
            window = st["server_window"]
            result = {
                "case": case, "ok": ok, "survived": survived, "challenge_ack": challenged,
                "fetch": "200 byte-exact" if survived else problem,
                "forged": forged, "replies": replies,
                "client_port": st["client_port"], "rcv_nxt": st["client_nxt"],
                "snd_nxt": st["server_nxt"], "server_window": window,
                "timestamps": st["client_tsval"] is not None,
            }
            results.append(result)
            what = ", ".join(f"{r['flags']} seq={r['seq']} ack={r['ack']} len={r['len']}"
                             for r in replies) or "nothing"
            print(f"{case:>16}: {'ok  ' if ok else 'FAIL'} forged {forged['flags']} "
                  f"seq={forged['seq']} ack={forged['ack']} len={forged['len']} "
                  f"(RCV.NXT={st['client_nxt']} SND.NXT={st['server_nxt']} window={window}) "
                  f"| server sent: {what} | challenge ACK: {'yes' if challenged else 'no'} "
                  f"| next request on the same connection: "
                  f"{'200 byte-exact' if survived else problem}", flush=True)
            if not survived:
                conn.close()
                conn = None
            # Challenge ACKs are rate-limited: leave the next case a fresh allowance.
            time.sleep(args.gap)
    finally:
        if conn is not None:
            conn.close()
        try:
            sniffer.stop()
        except Exception:  # the sniffer may have died with its interface
            pass
    passed = sum(r["ok"] for r in results)
    print(f"inject-blind: {passed} of {len(results)} cases passed "
          f"over {connections} connection(s)", flush=True)
    if args.json:
        print("RESULT " + json.dumps({"cases": results, "passed": passed,
                                      "total": len(results), "connections": connections}),
              flush=True)
    return 0 if passed == len(results) else 1


# ---------------------------------------------------------------------------------------------
# Standalone: a lab of our own


def run_standalone(args):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import labkit

    labkit.PROG = "inject-blind"

    def main():
        labkit.require_root("")
        labkit.ensure_tools(["ip", "ethtool"])
        if not os.path.exists(args.binary):
            raise labkit.Abort(f"no sirocco binary at {args.binary}: build it with "
                               "`cargo build --release`")
        tmp = tempfile.mkdtemp(prefix="inject-blind-")
        labkit.CLEANUP.push("temp dir", lambda: subprocess.run(["rm", "-rf", tmp]))
        docroot = os.path.join(tmp, "www")
        os.makedirs(docroot)
        body = bytes((i * 2654435761 >> 13) & 0xFF for i in range(65536))
        with open(os.path.join(docroot, "64k.bin"), "wb") as f:
            f.write(body)
        lab = labkit.Lab(f"sirocco-inject-{os.getpid()}", kernel_addrs=())
        lab.create()
        server = labkit.Sirocco(lab, os.path.abspath(args.binary), docroot, tmp)
        server.start(["64k.bin"])
        cmd = lab.in_cli([sys.executable, os.path.abspath(__file__), "--client",
                          "--server", labkit.SIROCCO_ADDR, "--iface", labkit.CLIENT_IFACE,
                          "--path", "/64k.bin", "--expect", os.path.join(docroot, "64k.bin"),
                          "--gap", str(args.gap)]
                         + (["--cases", args.cases] if args.cases else [])
                         + (["--json"] if args.json else []))
        code = subprocess.run(cmd, timeout=120).returncode
        server.stop()
        return code

    labkit.run_main(main)


def main():
    ap = argparse.ArgumentParser(prog="inject-blind", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--client", action="store_true",
                    help="run the cases in this namespace against --server (no lab of our own)")
    ap.add_argument("--binary", default="target/release/sirocco",
                    help="the sirocco to serve with, without --client")
    ap.add_argument("--server", default="198.18.0.2", help="the server's address")
    ap.add_argument("--iface", default="veth-cli", help="the client's interface to the server")
    ap.add_argument("--path", default="/64k.bin", help="what to fetch, with --client")
    ap.add_argument("--expect", help="the file PATH must be byte-equal to, with --client")
    ap.add_argument("--cases", help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--gap", type=float, default=1.2,
                    help="seconds to wait for replies after each forged segment, and again "
                         "before the next (challenge ACKs are rate-limited)")
    ap.add_argument("--timeout", type=float, default=5.0, help="socket timeout, seconds")
    ap.add_argument("--json", action="store_true", help="end with a line `RESULT {json}`")
    args = ap.parse_args()
    if not args.client:
        run_standalone(args)
        return
    if not args.expect:
        ap.error("--client needs --expect FILE")
    try:
        sys.exit(run_client(args))
    except Failure as e:
        log(f"error: {e}")
        sys.exit(2)


if __name__ == "__main__":
    main()
