"""The faults report: one row per fault, and one per race, from the NDJSON the
fault and race tests append to ORDERS_FAULTS_REPORT (tests/it/support.rs
`report_fault`, `report_race`).

Usage: faults-report.py REPORT.ndjson [OUT.md]   prints the table (and writes it);
                                                 fails when a fault is missing or violated
       faults-report.py --filter | --names       the tests, for nextest or cargo test
"""
import json
import os
import sys

# The tests that report, by the fault they report.
TESTS = {
    "1. kill -9 the worker": "faults::the_worker_killed_with_sigkill_loses_and_doubles_nothing",
    "2. restart Postgres": "faults::a_postgres_restart_answers_503_meanwhile_and_loses_nothing",
    "3. restart Temporal": "faults::a_temporal_restart_loses_and_doubles_nothing",
    "4. kill -9 the API": "faults::the_api_killed_with_sigkill_makes_one_order_per_key",
    "5. 100 concurrent orders for 10 in stock": "workflow::a_hundred_orders_for_ten_in_stock_ship_exactly_ten",
    "6. one key from 20 clients, same body": "api::concurrent_duplicates_create_one_order_and_one_workflow",
    "6. one key from 20 clients, two bodies": "api::a_key_raced_with_two_bodies_makes_one_order",
    "7. two workers, one killed repeatedly": "faults::two_racing_workers_one_killed_repeatedly_lose_and_double_nothing",
    "SIGTERM the worker, then the API": "faults::sigterm_to_the_worker_and_the_api_loses_and_doubles_nothing",
}

# The races (tests/it/races.rs), by the race they report.
RACES = {
    "race 1. cancel ∥ carrier pickup": "races::cancel_races_the_carriers_pickup",
    "race 2. cancel ∥ review": "races::cancel_races_the_review_decision",
    "race 3. approve ∥ reject, approve ∥ approve": "races::review_decisions_race_each_other",
    "race 4. amend ∥ approve, amend ∥ booking": "races::address_changes_race_the_booking",
    "race 5. cancel while pending or reserved": "races::an_early_cancel_stops_the_charge",
    "race 6. replayed POST ∥ cancel": "races::a_replayed_post_races_a_cancel",
}

if sys.argv[1] == "--filter":
    print(" | ".join(f"test(={t})" for t in [*TESTS.values(), *RACES.values()]))
    sys.exit(0)
if sys.argv[1] == "--names":
    print(" ".join([*TESTS.values(), *RACES.values()]))
    sys.exit(0)

rows = {}
races = {}
if os.path.exists(sys.argv[1]):
    for line in open(sys.argv[1]):
        if line.strip():
            r = json.loads(line)
            if "race" in r:
                races[r["race"]] = r
            else:
                rows[r["fault"]] = r

md = ["| fault | orders | faults injected | recovery | slowest next step | violations |", "|---|---|---|---|---|---|"]
failed = False
for fault in TESTS:
    r = rows.get(fault)
    if r is None:
        failed = True
        md.append(f"| {fault} | | | | | **the test failed before checking: see its output** |")
        continue
    rec = r["recovery_seconds"]
    recovery = f"{rec:.1f} s" if rec is not None else "–"
    violations = len(r["violations"])
    failed |= violations > 0
    slowest = (r.get("slowest") or "–").split(" (order")[0]
    md.append(f"| {fault} | {r['orders']} | {r['injected']} | {recovery} | {slowest} | {violations} |")
    md += [f"|   | | | | | {v} |" for v in r["violations"]]
md += ["", "Recovery: after each fault, the time until the last of the orders then in the service's hands "
       "(pending, reserved or paid) took its next step, by the timeline's own timestamps; the worst injection counts, "
       "and the slowest next step is that order's.", ""]
md += ["| race | rounds | orders | how the raced orders ended | violations |", "|---|---|---|---|---|"]
for race in RACES:
    r = races.get(race)
    if r is None:
        failed = True
        md.append(f"| {race} | | | | **the test failed before checking: see its output** |")
        continue
    violations = len(r["violations"])
    failed |= violations > 0
    ends = ", ".join(f"{end} {n}" for end, n in r["ends"].items())
    md.append(f"| {race} | {r['rounds']} | {r['orders']} | {ends} | {violations} |")
    md += [f"|   | | | | {v} |" for v in r["violations"]]
md += ["", "Each race's invariants are checked after its rounds: the first decision recorded wins and the loser hears "
       "409 (never a 5xx), every order ends as its records say and its workflow's result agrees, money (no refund "
       "once the parcel left or for a charge made after the stop), stock, bookings and notifications."]
text = "\n".join(md) + "\n"
print(text)
if len(sys.argv) > 2:
    open(sys.argv[2], "w").write(text)
sys.exit(1 if failed else 0)
