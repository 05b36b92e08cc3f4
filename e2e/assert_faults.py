#!/usr/bin/env python3
"""Checks what the faults of e2e/manifests/real-faults.yaml must have done.

Reads `kubectl get cpat -o json` on stdin and checks, from each
CommunicationPattern's status, the availability of orders that the runner
measured while Chaos Mesh held each fault in force:

- a direct call depends on catalog: DirectApiCall is (nearly) down while
  catalog is out;
- the two caches and asynchronous messaging keep orders answering while
  catalog is out;
- with a shared database, orders is down while the database is out.

A fault Chaos Mesh did not apply fails the check: its window says nothing.
Exits 1 with one line per failed check; prints every check it made.
"""

import json
import sys

# (pattern, fault name, bound, threshold): "below" means availability < t.
CHECKS = [
    ("DirectApiCall", "catalog-down", "below", 0.20),
    ("CacheWithApiUpdates", "catalog-down", "at-least", 0.95),
    ("CacheWithUpdateEvents", "catalog-down", "at-least", 0.95),
    ("AsyncMessaging", "catalog-down", "at-least", 0.95),
    ("SharedData", "database-down", "below", 0.20),
]


def fault_results(patterns):
    """{(pattern, fault name): result} from the patterns' status: the
    measurement of a fault in force, or the reason it was not applied."""
    results = {}
    for cp in patterns:
        pattern = cp["spec"]["pattern"]
        status = cp.get("status", {}).get("results") or {}
        for fault in status.get("faults", []):
            results[(pattern, fault["name"])] = fault
        for fault in status.get("faultsNotApplied", []):
            results[(pattern, fault["name"])] = {"notApplied": fault["reason"]}
    return results


def check(results, pattern, fault, bound, threshold):
    """None when the check passes, else what went wrong."""
    result = results.get((pattern, fault))
    if result is None:
        return f"{pattern}/{fault}: no result in status"
    if "notApplied" in result:
        return f"{pattern}/{fault}: not applied ({result['notApplied']})"
    if "inForce" not in result:
        return f"{pattern}/{fault}: no confirmed in-force window in status"
    availability = result.get("availability")
    if availability is None:
        return f"{pattern}/{fault}: no availability in status"
    ok = availability < threshold if bound == "below" else availability >= threshold
    verdict = "ok" if ok else "FAILED"
    print(f"  {verdict:6} {pattern:22} {fault:14} availability {availability:7.2%} ({bound} {threshold:.0%})")
    return None if ok else f"{pattern}/{fault}: availability {availability:.2%}, expected {bound} {threshold:.0%}"


def main():
    patterns = json.load(sys.stdin)["items"]
    results = fault_results(patterns)
    print("fault effects, from the CommunicationPatterns' status:")
    failures = [f for f in (check(results, *c) for c in CHECKS) if f]
    for failure in failures:
        print(f"fault effect not seen: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
