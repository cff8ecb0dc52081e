#!/usr/bin/env python3
"""Post distinct system.email.delivery events to a running bouncewatch hook.

    bench/load_events.py URL SECRET EVENTS [--processes N] [--batch N]

Each request carries BATCH events (default 100). Every event has its own uuid (process number
and sequence number), recipients come from a pool of 50,000 addresses over 2,000 domains, and
about 5% of the events are mailbox bounces (550 5.1.1), the rest deliveries. No event looks like
a domain outage, so the rules engine never starts a clear. Prints requests, events, seconds,
events per second and the count of non-2xx responses.
"""
import argparse
import http.client
import json
import multiprocessing
import random
import sys
import time
from urllib.parse import urlsplit

OK = "250 2.0.0 OK"
BOUNCE = "550 5.1.1 <{a}>: Recipient address rejected: User unknown in virtual mailbox table"


def event(uuid, address, bounced):
    status, result, reason = ("BOUNCE", "FAILURE", "bounce") if bounced else ("DELIVERED", "SUCCESS", "delivered")
    message = BOUNCE.format(a=address) if bounced else OK
    return {"uuid": uuid, "published": "2026-12-04T10:00:00.000Z", "eventType": "system.email.delivery",
            "version": "0", "severity": "WARN" if bounced else "INFO", "legacyEventType": None,
            "displayMessage": f"Email delivery {result}: {reason}",
            "actor": {"id": "0oa1system0example", "type": "SystemPrincipal",
                      "alternateId": "system@example.okta.com", "displayName": "Okta System", "detailEntry": None},
            "client": {"userAgent": None, "zone": None, "device": None, "id": None, "ipAddress": None,
                       "geographicalContext": None},
            "outcome": {"result": result, "reason": reason},
            "target": [{"id": "00u1example0user0001", "type": "User", "alternateId": address,
                        "displayName": "Example User", "detailEntry": None}],
            "transaction": {"type": "JOB", "id": "job1example", "detail": {}},
            "debugContext": {"debugData": {"deliveryStatus": status, "providerMessage": message,
                                           "emailTemplate": "ActivationEmail", "requestId": "req-example"}},
            "authenticationContext": {"authenticationProvider": None, "credentialProvider": None,
                                      "credentialType": None, "issuer": None, "interface": None,
                                      "authenticationStep": 0, "externalSessionId": "unknown"},
            "securityContext": {"asNumber": None, "asOrg": None, "isp": None, "domain": None, "isProxy": None},
            "request": {"ipChain": []}}


def worker(args):
    url, secret, process, requests, batch = args
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    rng = random.Random(process)
    failed = 0
    for request in range(requests):
        events = []
        for n in range(batch):
            sequence = request * batch + n
            address = f"user{rng.randrange(50000)}@d{rng.randrange(2000):04d}.example"
            uuid = "%08x-0000-4000-8000-%012x" % (process, sequence)
            events.append(event(uuid, address, rng.random() < 0.05))
        body = json.dumps({"eventType": "com.okta.event_hook", "eventTypeVersion": "1.0",
                           "cloudEventsVersion": "0.1", "source": "https://example.okta.com/api/v1/eventHooks/who1",
                           "eventId": "%08x-0000-4000-8eee-%012x" % (process, request),
                           "data": {"events": events}, "eventTime": "2026-12-04T10:00:01.000Z",
                           "contentType": "application/json"}, separators=(",", ":"))
        connection.request("POST", parts.path or "/okta/events", body,
                           {"Content-Type": "application/json", "Authorization": secret})
        response = connection.getresponse()
        response.read()
        if not 200 <= response.status < 300:
            failed += 1
    return failed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("secret")
    parser.add_argument("events", type=int)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    requests_each = args.events // (args.batch * args.processes)
    started = time.monotonic()
    with multiprocessing.Pool(args.processes) as pool:
        failures = pool.map(worker, [(args.url, args.secret, p, requests_each, args.batch)
                                     for p in range(args.processes)])
    seconds = time.monotonic() - started
    events = requests_each * args.batch * args.processes
    print(f"requests {requests_each * args.processes}, events {events}, seconds {seconds:.1f}, "
          f"events/s {events / seconds:.0f}, non-2xx {sum(failures)}")
    return 1 if sum(failures) else 0


if __name__ == "__main__":
    sys.exit(main())
