"""The faults, races and abuse report: one table per section, a row per fault,
race or probe, from the NDJSON the tests append to ORDERS_FAULTS_REPORT
(tests/it/support.rs `report_fault`, `report_race`; tests/it/abuse.rs).

Usage: faults-report.py REPORT.ndjson [OUT.md] [--sections faults,races,abuse]
           prints the tables of those sections (all by default) and writes them;
           fails when a row is missing (its test failed first) or has violations
       faults-report.py --filter | --names [--sections ...]
           the tests of those sections, for nextest or cargo test
"""
import json
import os
import sys

# The tests that report, by section and by the name they report under.
SECTIONS = {
    "faults": {
        "1. kill -9 the worker": "faults::the_worker_killed_with_sigkill_loses_and_doubles_nothing",
        "2. restart Postgres": "faults::a_postgres_restart_answers_503_meanwhile_and_loses_nothing",
        "3. restart Temporal": "faults::a_temporal_restart_loses_and_doubles_nothing",
        "4. kill -9 the API": "faults::the_api_killed_with_sigkill_makes_one_order_per_key",
        "5. 100 concurrent orders for 10 in stock": "workflow::a_hundred_orders_for_ten_in_stock_ship_exactly_ten",
        "6. one key from 20 clients, same body": "api::concurrent_duplicates_create_one_order_and_one_workflow",
        "6. one key from 20 clients, two bodies": "api::a_key_raced_with_two_bodies_makes_one_order",
        "7. two workers, one killed repeatedly": "faults::two_racing_workers_one_killed_repeatedly_lose_and_double_nothing",
        "SIGTERM the worker, then the API": "faults::sigterm_to_the_worker_and_the_api_loses_and_doubles_nothing",
    },
    "races": {
        "race 1. cancel ∥ carrier pickup": "races::cancel_races_the_carriers_pickup",
        "race 2. cancel ∥ review": "races::cancel_races_the_review_decision",
        "race 3. approve ∥ reject, approve ∥ approve": "races::review_decisions_race_each_other",
        "race 4. amend ∥ approve, amend ∥ booking": "races::address_changes_race_the_booking",
        "race 5. cancel while pending or reserved": "races::an_early_cancel_stops_the_charge",
        "race 6. replayed POST ∥ cancel": "races::a_replayed_post_races_a_cancel",
    },
    "abuse": {
        "bursts: 100 amends, reviews, cancels, carrier reports, wrong codes":
            "abuse::bursts_on_one_order_and_one_account_are_answered_and_bounded",
        "sign-up flood: 100 from one address": "abuse::a_sign_up_flood_is_refused",
        "slow clients: 500 trickling connections, 200 held event streams":
            "abuse::slow_clients_and_held_streams_do_not_stop_the_service",
        "existence: another's order vs an unknown id": "abuse::another_customers_order_is_as_unknown_as_a_missing_one",
    },
}
# The key each section's rows are named by in the NDJSON.
KEYS = {"faults": "fault", "races": "race", "abuse": "probe"}

args = sys.argv[1:]
sections = list(SECTIONS)
if "--sections" in args:
    i = args.index("--sections")
    sections = args[i + 1].split(",")
    del args[i:i + 2]
tests = [t for s in sections for t in SECTIONS[s].values()]
if args[0] == "--filter":
    print(" | ".join(f"test(={t})" for t in tests))
    sys.exit(0)
if args[0] == "--names":
    print(" ".join(tests))
    sys.exit(0)

rows = {s: {} for s in SECTIONS}
if os.path.exists(args[0]):
    for line in open(args[0]):
        if line.strip():
            r = json.loads(line)
            for section, key in KEYS.items():
                if key in r:
                    rows[section][r[key]] = r

HEADERS = {
    "faults": ("| fault | orders | faults injected | recovery | slowest next step | violations |", 6),
    "races": ("| race | rounds | orders | how the raced orders ended | violations |", 5),
    "abuse": ("| probe | requests | answers | worker restarts | violations |", 5),
}
NOTES = {
    "faults": "Recovery: after each fault, the time until the last of the orders then in the service's hands "
              "(pending, reserved or paid) took its next step, by the timeline's own timestamps; the worst "
              "injection counts, and the slowest next step is that order's.",
    "races": "Each race's invariants are checked after its rounds: the first decision recorded wins and the loser "
             "hears 409 (never a 5xx), every order ends as its records say and its workflow's result agrees, money "
             "(no refund once the parcel left or for a charge made after the stop), stock, bookings and notifications.",
    "abuse": "After each probe: the worker is the same process (it never died), both readiness probes answer 200, "
             "and a fresh order reaches `shipped`; every answer is one the probe allows (never a 5xx or a hang).",
}


def cells(section, r):
    if section == "faults":
        rec = r["recovery_seconds"]
        recovery = f"{rec:.1f} s" if rec is not None else "–"
        slowest = (r.get("slowest") or "–").split(" (order")[0]
        return [r["orders"], r["injected"], recovery, slowest]
    if section == "races":
        return [r["rounds"], r["orders"], ", ".join(f"{end} {n}" for end, n in r["ends"].items())]
    answers = ", ".join(f"{status}: {n}" for status, n in r["answers"].items())
    return [r["requests"], answers, r["worker_restarts"]]


md = []
failed = False
for section in sections:
    header, columns = HEADERS[section]
    md += [header, "|" + "---|" * columns]
    for name in SECTIONS[section]:
        r = rows[section].get(name)
        if r is None:
            failed = True
            md.append(f"| {name} |" + " |" * (columns - 2) + " **the test failed before checking: see its output** |")
            continue
        violations = len(r["violations"])
        failed |= violations > 0
        md.append("| " + " | ".join(str(c) for c in [name, *cells(section, r), violations]) + " |")
        md += ["|   |" + " |" * (columns - 2) + f" {v} |" for v in r["violations"]]
    md += ["", NOTES[section], ""]
text = "\n".join(md)
print(text)
if len(args) > 1:
    open(args[1], "w").write(text)
sys.exit(1 if failed else 0)
