#!/usr/bin/env python3
"""Run bouncewatch at a steady hook load for a fixed time and sample it every 10 seconds.

    bench/soak.py PATH/TO/bouncewatch OUT.csv [--seconds 630] [--rate 100]

Starts, all on 127.0.0.1: a fake Okta that responds to `POST .../bounces/remove-list` with 200
`{}` and `GET /api/v1/logs` with `[]`, a webhook receiver that responds with 200, and bouncewatch
with gap-fill off and a subscription to every notification kind. The load is RATE events per
second in 10 hook requests per second: deliveries over 200 domains and 5,000 addresses, 3%
mailbox bounces and 2% deferrals. Every 120 s one new domain has a 60 s outage (a fifth of all
events become connection failures at that domain, from many addresses), followed by
deliveries there, so the rules engine opens and recovers outages and clears addresses through
the fake Okta. `published` times follow the wall clock. Each sample row contains RSS, peak RSS,
`du -sb` of the data directory, hook latency p50/p99 of the last 10 s, the rules and outbox
queue depths, notifications received and remove-list calls so far.
"""
import argparse
import csv
import http.client
import http.server
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

HOOK_SECRET = "example-secret"
ADMIN_TOKEN = "example-admin-token"
SUBSCRIPTION_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+7YJ6wk2GfE="
counts = {"notifications": 0, "remove_list": 0, "logs": 0, "okta_other": 0}
counts_lock = threading.Lock()


def count(key):
    with counts_lock:
        counts[key] += 1


class Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length)


class FakeOkta(Quiet):
    def do_GET(self):
        if self.path.startswith("/api/v1/logs"):
            count("logs")
            return self.reply(200, "[]")
        count("okta_other")
        self.reply(404, "{}")

    def do_POST(self):
        self.read_body()
        if self.path == "/api/v1/org/email/bounces/remove-list":
            count("remove_list")
            return self.reply(200, "{}")
        count("okta_other")
        self.reply(404, "{}")


class Receiver(Quiet):
    def do_POST(self):
        self.read_body()
        count("notifications")
        self.reply(200, "{}")


def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def event(rng, status, address, message):
    result = "SUCCESS" if status == "DELIVERED" else "FAILURE"
    now = datetime.now(timezone.utc)
    return {"uuid": "%08x-%04x-4%03x-8%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12),
                                                     rng.getrandbits(12), rng.getrandbits(48)),
            "published": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            "eventType": "system.email.delivery", "version": "0", "severity": "INFO",
            "displayMessage": f"Email delivery {result}",
            "actor": {"id": "0oa1system0example", "type": "SystemPrincipal",
                      "alternateId": "system@example.okta.com", "displayName": "Okta System"},
            "outcome": {"result": result, "reason": status.lower()},
            "target": [{"id": "00u1example0user0001", "type": "User", "alternateId": address,
                        "displayName": "Example User"}],
            "transaction": {"type": "JOB", "id": "job1example", "detail": {}},
            "debugContext": {"debugData": {"deliveryStatus": status, "providerMessage": message,
                                           "emailTemplate": "ActivationEmail"}}}


def pick_event(rng, elapsed):
    slot, offset = divmod(int(elapsed), 120)
    outage_domain = f"d{slot:04d}.example"
    roll = rng.random()
    if offset < 60 and roll < 0.2:
        address = f"user{rng.randrange(5000)}@{outage_domain}"
        return event(rng, "BOUNCE", address, f"421 4.4.1 Connection refused by mx.{outage_domain}[192.0.2.10]:25")
    if offset >= 60 and roll < 0.05:
        return event(rng, "DELIVERED", f"user{rng.randrange(5000)}@{outage_domain}", "250 2.0.0 OK")
    address = f"user{rng.randrange(5000)}@d{rng.randrange(200):04d}.example"
    roll = rng.random()
    if roll < 0.03:
        return event(rng, "BOUNCE", address,
                     f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table")
    if roll < 0.05:
        return event(rng, "DEFERRED", address, "421 4.7.0 [TSS04] Messages temporarily deferred")
    return event(rng, "DELIVERED", address, "250 2.0.0 OK")


def metrics(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    depth = {}
    for line in text.splitlines():
        if line.startswith("bouncewatch_queue_depth{"):
            name = line.split('queue="')[1].split('"')[0]
            depth[name] = float(line.split()[-1])
    return depth


def process_memory(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[round((len(ordered) - 1) * p)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("out")
    parser.add_argument("--seconds", type=int, default=630)
    parser.add_argument("--rate", type=int, default=100)
    args = parser.parse_args()

    okta_port = serve(FakeOkta)
    receiver_port = serve(Receiver)
    data = tempfile.mkdtemp(prefix="bouncewatch-soak-")
    with socket_port() as port:
        pass
    env = dict(os.environ, BOUNCEWATCH_LISTEN=f"127.0.0.1:{port}", BOUNCEWATCH_DATA_DIR=f"{data}/data",
               BOUNCEWATCH_HOOK_SECRET=HOOK_SECRET, BOUNCEWATCH_ADMIN_TOKEN=ADMIN_TOKEN,
               BOUNCEWATCH_OKTA_ORG_URL=f"http://127.0.0.1:{okta_port}", BOUNCEWATCH_OKTA_API_TOKEN="example-okta-token",
               BOUNCEWATCH_GAP_FILL="false", BOUNCEWATCH_FORWARD_ALLOW_PRIVATE="true", RUST_LOG="warn")
    log = open(f"{data}/bouncewatch.log", "w")
    service = subprocess.Popen([args.binary, "serve"], env=env, stdout=log, stderr=log)
    try:
        run(args, port, receiver_port, service, data)
    finally:
        service.terminate()
        service.wait(timeout=30)
        print(f"bouncewatch log: {data}/bouncewatch.log")


class socket_port:
    def __enter__(self):
        import socket
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        return self.socket.getsockname()[1]

    def __exit__(self, *exc):
        self.socket.close()


def run(args, port, receiver_port, service, data):
    for _ in range(200):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            break
        except OSError:
            time.sleep(0.05)
    connection.request("POST", "/api/v1/subscriptions",
                       json.dumps({"url": f"http://127.0.0.1:{receiver_port}/hooks", "secret": SUBSCRIPTION_SECRET}),
                       {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    response = connection.getresponse()
    body = response.read()
    if response.status >= 300:
        sys.exit(f"subscription create returned {response.status}: {body!r}")

    latencies = []
    latencies_lock = threading.Lock()
    failures = [0]
    stop = threading.Event()
    started = time.monotonic()

    def load():
        rng = random.Random(20261204)
        hook = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        per_request = args.rate // 10
        next_at = time.monotonic()
        while not stop.is_set():
            elapsed = time.monotonic() - started
            events = [pick_event(rng, elapsed) for _ in range(per_request)]
            body = json.dumps({"eventType": "com.okta.event_hook", "eventId": "%032x" % rng.getrandbits(128),
                               "data": {"events": events}})
            sent = time.monotonic()
            hook.request("POST", "/okta/events", body,
                         {"Authorization": HOOK_SECRET, "Content-Type": "application/json"})
            response = hook.getresponse()
            response.read()
            took = time.monotonic() - sent
            if response.status != 200:
                failures[0] += 1
            with latencies_lock:
                latencies.append(took * 1000)
            next_at += 0.1
            time.sleep(max(0.0, next_at - time.monotonic()))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    with open(args.out, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["seconds", "rss_kib", "hwm_kib", "store_bytes", "hook_p50_ms", "hook_p99_ms",
                         "hook_requests", "non_200", "rules_queue", "outbox_queue", "clears_queue",
                         "notifications", "remove_list_calls"])
        while time.monotonic() - started < args.seconds:
            time.sleep(10 - (time.monotonic() - started) % 10)
            with latencies_lock:
                window, latencies[:] = latencies[:], []
            memory = process_memory(service.pid)
            store = int(subprocess.run(["du", "-sb", f"{data}/data"], capture_output=True, text=True).stdout.split()[0])
            depth = metrics(port)
            with counts_lock:
                snapshot = dict(counts)
            row = [round(time.monotonic() - started), memory["VmRSS"], memory["VmHWM"], store,
                   round(percentile(window, 0.5), 2), round(percentile(window, 0.99), 2), len(window),
                   failures[0], depth.get("rules", 0), depth.get("outbox", 0), depth.get("clears", 0),
                   snapshot["notifications"], snapshot["remove_list"]]
            writer.writerow(row)
            out.flush()
            print(*row, flush=True)
    stop.set()
    thread.join(timeout=30)
    print("fake Okta requests:", {k: v for k, v in counts.items() if k != "notifications"})


if __name__ == "__main__":
    main()
