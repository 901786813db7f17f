"""Turns the NDJSON of scripts/bench into bench/results/<stamp>.json, .md and .png.

Usage: bench-report.py RESULTS.ndjson OUT_PREFIX [--quick]
"""
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, prefix = sys.argv[1], sys.argv[2]
quick = "--quick" in sys.argv
rows = [json.loads(line) for line in open(src) if line.strip().startswith("{")]


def one(scenario):
    found = [r for r in rows if r.get("scenario") == scenario]
    return found[0] if found else None


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


machine = {
    "cpu": cpu_model(),
    "cores": os.cpu_count(),
    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    "kernel": platform.release(),
    "os": (open("/etc/os-release").read().split('PRETTY_NAME="')[1].split('"')[0] if os.path.exists("/etc/os-release") else ""),
    "temporal": "temporal CLI dev server (SQLite), same machine",
    "postgres": subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip(),
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
}
floors = {r["result"]["shape"]: r["result"] for r in rows if r.get("scenario") == "floor"}
e2e = one("end_to_end")


def first_pair(floors_, e2e_):
    """Floor (a) and this service's first end-to-end run, the pair every report has."""
    return [{"floor_a": floors_["ours"]["per_second"], "end_to_end": e2e_["per_second"]}] \
        if e2e_ and "ours" in floors_ else []


# Floor (a) against this service in pairs of runs: the first pair is the runs
# above; scripts/bench then runs six more, in blocks of this service, floor (a),
# floor (a), this service (earlier reports: two, in one such block).
def repeated_pairs(e2e_scenario, floor_scenario):
    """Pairs of repeated runs, recorded under these scenario names, in run order,
    with the Temporal server's CPU ms per order in each run (reports before
    `2026-12-04` lack it)."""
    def temporal_ms(run, n):
        return run["temporal_cpu_s"] * 1000 / n if "temporal_cpu_s" in run else None
    return [{"floor_a": f["result"]["per_second"], "end_to_end": r["per_second"],
             "floor_a_temporal_ms": temporal_ms(f, f["result"]["workflows"]),
             "end_to_end_temporal_ms": temporal_ms(r, r["orders"])}
            for r, f in zip([r for r in rows if r.get("scenario") == e2e_scenario],
                            [r for r in rows if r.get("scenario") == floor_scenario])]


ratio_pairs = first_pair(floors, e2e) + repeated_pairs("end_to_end_repeat", "floor_repeat")
# The same with the Temporal server on a core of its own (not the target's figure).
pinned_pairs = repeated_pairs("end_to_end_pinned", "floor_pinned")
e2e2 = one("end_to_end_two_workers")
e2e_delivered = one("end_to_end_delivered")
cost = one("cost")
all_starts = sorted((r for r in rows if r.get("scenario") == "start_path"), key=lambda r: r["concurrency"])
# The targets compare like with like: with the worker stopped neither side shares the
# machine with running orders. Older runs measured only with the worker running.
stopped = [r for r in all_starts if r.get("worker") == "stopped"]
running = [r for r in all_starts if r.get("worker", "running") == "running"]
starts, busy = (stopped, running) if stopped else (running, [])
reads = one("reads")
pg_statements = one("pg_statements")
listing = one("list")
soak = one("soak")
host = one("host")
if host:
    machine["cpu_steal_share"] = host["cpu_steal_share"]

cpu_per_1000 = {}
if cost:
    for proc in ["api", "worker", "postgres", "temporal"]:
        used = cost["cpu_after"][proc] - cost["cpu_before"][proc]
        cpu_per_1000[proc] = round(used / cost["orders"] * 1000, 2)



# Two-sided 95 % quantiles of Student's t by degrees of freedom (1-10); more pairs
# than eleven take the last, which makes their interval a little wide, never narrow.
T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]


def mean_ratio(pairs):
    """The mean of the pairs' end-to-end / floor (a) ratios, and its 95 % confidence
    interval (None for a single pair)."""
    ratios = [p["end_to_end"] / p["floor_a"] for p in pairs]
    mean = statistics.mean(ratios)
    if len(ratios) < 2:
        return ratios, mean, None
    half = T_975[min(len(ratios) - 1, len(T_975)) - 1] * statistics.stdev(ratios) / len(ratios) ** 0.5
    return ratios, mean, (mean - half, mean + half)


def measure(rep):
    """The targets of a report (this run's or an earlier one's JSON): name, figure, goal, met."""
    out = []

    def target(name, value, goal, ok):
        out.append({"target": name, "measured": value, "goal": goal, "met": bool(ok)})

    fl, e2e_, cost_, reads_ = rep.get("floors") or {}, rep.get("end_to_end"), rep.get("cost"), rep.get("reads")
    # Earlier reports have one pair (the floors' and the end-to-end run's).
    pairs = rep.get("ratio_pairs") or first_pair(fl, e2e_)
    for r in rep.get("start_path") or []:
        post, bare = r["post"], r["bare_start"]
        ratio = post["per_second"] / bare["per_second"] if bare["per_second"] else 0
        p99 = post["latency_ms"]["p99"] / bare["latency_ms"]["p99"] if bare["latency_ms"]["p99"] else 0
        # Issue 18 asks 0.95 at concurrency 1 and 8; the higher ones keep the earlier 0.9.
        want = 0.95 if r["concurrency"] <= 8 else 0.9
        target(f"start path c={r['concurrency']}: throughput vs bare start", f"{ratio:.2f}x", f">= {want}x", ratio >= want)
        target(f"start path c={r['concurrency']}: p99 vs bare start", f"{p99:.2f}x", "<= 1.2x", p99 <= 1.2)
    if pairs:
        # The mean over the pairs, not their median: the median of a few noisy pairs
        # read 0.93-0.96 x where six pairs of the same code, measured so, averaged 0.89 x.
        ratios, r, ci = mean_ratio(pairs)
        each = (f" (mean of {len(ratios)} pairs, 95 % CI {ci[0]:.2f}-{ci[1]:.2f}: "
                f"{', '.join(f'{x:.2f}' for x in ratios)})") if ci else ""
        target("end to end vs floor (a)", f"{r:.2f}x{each}", ">= 0.95x", r >= 0.95)
    pinned = rep.get("pinned_pairs")
    if pinned:
        ratios, r, ci = mean_ratio(pinned)
        interval = f", 95 % CI {ci[0]:.2f}-{ci[1]:.2f}" if ci else ""
        target("end to end vs floor (a), Temporal server on a core of its own",
               f"{r:.2f}x (mean of {len(ratios)} pairs{interval})", "reported", True)
    if e2e_ and "ours" in fl:
        target("history events / workflow tasks per order, to shipped",
               f"{e2e_['history_events']} / {e2e_['workflow_tasks']}", "< 18 events", e2e_["history_events"] < 18)
    if pairs and "naive" in fl:
        r = statistics.median(p["end_to_end"] for p in pairs) / fl["naive"]["per_second"]
        target("end to end vs floor (b)", f"{r:.2f}x", ">= 3x", r >= 3)
    whole = rep.get("end_to_end_delivered")
    if whole:
        target("end to end, whole lifecycle to delivered: orders/s, history events / workflow tasks",
               f"{whole['per_second']:.1f}/s, {whole['history_events']} / {whole['workflow_tasks']}", "reported", True)
    cpu = rep.get("cpu_seconds_per_1000_orders") or {}
    pg = cpu.get("postgres")
    if pg is not None:
        # Temporal's work per order is the same from run to run (same history), so
        # its CPU is the yardstick of the machine's speed: the ratio compares across runs.
        per_t = f" ({pg / cpu['temporal']:.2f} x Temporal's)" if cpu.get("temporal") else ""
        target("Postgres CPU s per 1000 orders (end to end)", f"{pg:.2f} s{per_t}", "<= 5 s", pg <= 5)
    wal = (cost_ or {}).get("wal")
    if wal:
        target("Postgres WAL per order (end to end)", f"{wal['bytes'] / cost_['orders'] / 1024:.1f} KiB, "
               f"{wal['records'] / cost_['orders']:.0f} records", "reported", True)
    plan = ((rep.get("list") or {}).get("explain") or {}).get("customer_status_page")
    if plan:
        exact = any("Index Cond" in l and "status" in l for l in plan) and not any("Rows Removed by Filter" in l for l in plan)
        ms_ = next((l.split(":")[1].strip() for l in plan if l.startswith("Execution Time")), "?")
        target("GET /orders?customer_id&status: index makes it exact", f"{'exact' if exact else 'filters'}, {ms_}",
               "exact", exact)
    if reads_:
        p99 = reads_["get"]["latency_ms"]["p99"]
        target("GET /orders/{id} p99 at 500/s", f"{p99:.2f} ms", "< 5 ms", p99 < 5)
        if "highest_rate_p99_under_10ms" in reads_:
            top = reads_["highest_rate_p99_under_10ms"]
            target("GET /orders/{id}: highest rate with p99 < 10 ms", f"{top}/s" if top else "below 500/s", "reported", True)
    if cost_:
        target("API RSS", f"{cost_['rss_peak_mib']['api']} MiB", "< 64 MiB", cost_["rss_peak_mib"]["api"] < 64)
        target("worker RSS, open workflows waiting", f"{cost_['rss_peak_mib']['worker']} MiB with {cost_['open_workflows']}",
               "<= 64 MiB", cost_["rss_peak_mib"]["worker"] <= 64)
    for name, value, goal, ok in soak_verdicts(rep.get("soak")):
        target(name, value, goal, ok)
    return out


def quarter_means(samples, value):
    """Means of the second and the last quarter of a soak (the first is warm-up)."""
    vals = [value(s) for s in samples]
    vals = [v for v in vals if v is not None]
    q = max(1, len(vals) // 4)
    if len(vals) < 2 * q:
        return None
    mid, last = vals[q:2 * q], vals[-q:]
    return sum(mid) / len(mid), sum(last) / len(last)


def soak_verdicts(soak_):
    """Flat means: the last quarter is no more than 10 % above the second (RSS, open
    workflows), p99 no more than 1.5x, and nothing stranded after the load stops."""
    if not soak_ or not soak_.get("samples"):
        return []
    out = []
    for label, get, limit in [("API RSS", lambda s: s["rss_mib"]["api"], 1.10),
                              ("worker RSS", lambda s: s["rss_mib"]["worker"], 1.10),
                              ("open workflows", lambda s: s["open_workflows"], 1.10),
                              ("POST /orders p99", lambda s: s["post_ms"]["p99"] if s["post_ms"]["count"] else None, 1.5),
                              ("accepted -> delivered p99", lambda s: s["delivered_p99_ms"], 1.5)]:
        m = quarter_means(soak_["samples"], get)
        if m:
            growth = m[1] / m[0] if m[0] else 1.0
            out.append((f"soak: {label}, last quarter vs second", f"{m[0]:.1f} -> {m[1]:.1f} ({growth:.2f}x)",
                        f"<= {limit}x", growth <= limit))
    # A slow, steady growth per order stays inside the quarters' 10 % in a short soak
    # (the SDK's activity half keeps about 1 KB per order: docs/operations.md): the
    # slope over the second half shows it as a figure.
    samples = soak_["samples"]
    served = list(itertools.accumulate(x["posted"] for x in samples))
    half = len(samples) // 2
    if len(samples) - half >= 3 and served[-1] > served[half]:
        slope = statistics.linear_regression(served[half:], [x["rss_mib"]["worker"] for x in samples[half:]]).slope
        out.append(("soak: worker RSS over the second half, per 1000 orders", f"{slope * 1000:+.2f} MiB", "reported",
                    True))
    out.append(("soak: orders stranded after the load stopped", str(soak_["stranded_after_drain"]), "0",
                soak_["stranded_after_drain"] == 0))
    return out


def previous_report(prefix):
    """The newest full (not quick) report in the same directory before this one."""
    here = os.path.dirname(prefix) or "."
    mine = os.path.basename(prefix)
    names = sorted(n for n in os.listdir(here) if n[:2] == "20" and n.endswith(".json") and n[:-5] < mine)
    for n in reversed(names):
        rep = json.load(open(os.path.join(here, n)))
        if not rep.get("quick"):
            return n[:-5], rep
    return None, None


report = {"machine": machine, "quick": quick, "floors": floors, "end_to_end": e2e, "ratio_pairs": ratio_pairs,
          "pinned_pairs": pinned_pairs,
          "end_to_end_two_workers": e2e2,
          "end_to_end_delivered": e2e_delivered,
          "cost": cost, "cpu_seconds_per_1000_orders": cpu_per_1000, "start_path": starts, "start_path_worker_running": busy,
          "reads": reads, "postgres_statements": pg_statements,
          "list": listing, "soak": soak}
report["targets"] = targets = measure(report)
previous_stamp, previous = previous_report(prefix)
previous_targets = {t["target"]: t for t in measure(previous)} if previous else {}
with open(prefix + ".json", "w") as f:
    json.dump(report, f, indent=2)

# Chart: throughput and p99 against concurrency, POST /orders next to bare starts.
if starts:
    cs = [r["concurrency"] for r in starts]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(cs, [r["post"]["per_second"] for r in starts], "o-", label="POST /orders")
    a.plot(cs, [r["bare_start"]["per_second"] for r in starts], "s--", label="bare StartWorkflowExecution")
    if busy:
        a.plot([r["concurrency"] for r in busy], [r["post"]["per_second"] for r in busy], "^:", label="POST /orders, worker running")
    a.set_xscale("log", base=2); a.set_xlabel("concurrency"); a.set_ylabel("per second"); a.set_title("throughput")
    a.legend(); a.grid(alpha=.3)
    b.plot(cs, [r["post"]["latency_ms"]["p99"] for r in starts], "o-", label="POST /orders")
    b.plot(cs, [r["bare_start"]["latency_ms"]["p99"] for r in starts], "s--", label="bare StartWorkflowExecution")
    if busy:
        b.plot([r["concurrency"] for r in busy], [r["post"]["latency_ms"]["p99"] for r in busy], "^:",
               label="POST /orders, worker running")
    b.set_xscale("log", base=2); b.set_xlabel("concurrency"); b.set_ylabel("ms"); b.set_title("p99 latency")
    b.legend(); b.grid(alpha=.3)
    fig.suptitle(f"orders start path — {machine['cores']} cores, {machine['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(prefix + ".png", dpi=110)


def ms(p):
    return f"{p['p50']:.1f} / {p['p99']:.1f}" + (f" / {p['p999']:.1f}" if "p999" in p else "")


md = [f"# Benchmark {os.path.basename(prefix)}{' (quick)' if quick else ''}", "",
      f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, {machine['os']}, "
      f"kernel {machine['kernel']}; {machine['temporal']}; {machine['postgres']}; commit {machine['commit']}.", ""]
if "cpu_steal_share" in machine:
    steal = machine["cpu_steal_share"]
    md += [f"CPU time stolen by the hypervisor over the run: {100 * steal:.1f} %"
           + (" — **too much for this run's figures to compare with other runs'** (ratios within the run suffer too)."
              if steal > 0.05 else "."), ""]
md += ["## End to end (first POST to last `shipped`) and floors", "",
       "| run | orders | orders/s | latency p50 / p99 ms | history events | workflow tasks |", "|---|---|---|---|---|---|"]
names = {"ours": "floor (a): OrderWorkflow, no-op activities", "naive": "floor (b): five regular activities"}
for shape, r in floors.items():
    l = r["latency_ms"]
    md.append(f"| {names[shape]} | {r['workflows']} | {r['per_second']:.1f} | {l['p50']:.1f} / {l['p99']:.1f} | "
              f"{r['history_events']} | {r['workflow_tasks']} |")
for label, r, end in [("this service, 1 worker", e2e, "shipped"), ("this service, 2 workers", e2e2, "shipped"),
                      ("this service, whole lifecycle to `delivered` (carrier reporting)", e2e_delivered, "delivered")]:
    if r:
        l = r[f"accepted_to_{end}_ms"]
        md.append(f"| {label} | {r['orders']} | {r['per_second']:.1f} | {l['p50']:.1f} / {l['p99']:.1f} | "
                  f"{r['history_events']} | {r['workflow_tasks']} |")
md += ["", "History events and workflow tasks are counted up to `shipped` (ours then waits for the carrier), "
       "except on the whole lifecycle's row: there the simulated carrier reports pickup 2 s after booking and "
       "delivery 5 s later, and they count the whole history; its latency includes those 7 s.", ""]


def pairs_table(pairs):
    """The pairs of runs as a table, one row each, with the Temporal server's CPU
    per order in each side's run, and what that CPU says, where it was measured."""
    def cpu(ms):
        return "—" if ms is None else f"{ms:.1f}"
    rows_ = ["| pair | floor (a) orders/s | this service orders/s | ratio | Temporal CPU ms/order, floor (a) / this service |",
             "|---|---|---|---|---|"] + [
        f"| {i} | {p['floor_a']:.1f} | {p['end_to_end']:.1f} | {p['end_to_end'] / p['floor_a']:.2f} | "
        f"{cpu(p.get('floor_a_temporal_ms'))} / {cpu(p.get('end_to_end_temporal_ms'))} |"
        for i, p in enumerate(pairs, 1)] + [""]
    measured = [p for p in pairs if p.get("floor_a_temporal_ms") and p.get("end_to_end_temporal_ms")]
    if measured:
        floor_ms = statistics.mean(p["floor_a_temporal_ms"] for p in measured)
        ours_ms = statistics.mean(p["end_to_end_temporal_ms"] for p in measured)
        rows_ += [f"The Temporal server does the same work per order for both sides (the same history); the CPU it "
                  f"spent on it averaged {floor_ms:.1f} ms per order in floor (a)'s runs and {ours_ms:.1f} ms in "
                  f"this service's ({ours_ms / floor_ms:.2f} x), over {len(measured)} pairs.", ""]
    return rows_


if len(ratio_pairs) > 1:
    _, mean, (low, high) = mean_ratio(ratio_pairs)
    md += [f"Floor (a) and this service (1 worker) in {len(ratio_pairs)} pairs of runs: the first pair is the rows "
           "above; the others ran in blocks of this service, floor (a), floor (a), this service, so that each side "
           f"ran first as often as second. Mean ratio **{mean:.2f}** (95 % confidence interval {low:.2f}-{high:.2f}); "
           "the target takes the mean.", ""] + pairs_table(ratio_pairs)
if len(pinned_pairs) > 1:
    _, mean, (low, high) = mean_ratio(pinned_pairs)
    md += [f"The same in {len(pinned_pairs)} more pairs with the Temporal server pinned to core 0 and Postgres, the "
           "worker, the API and the generator to the other cores (`taskset`), so that they never take the server's "
           f"core, as where Temporal runs on nodes of its own: mean ratio **{mean:.2f}** (95 % confidence interval "
           f"{low:.2f}-{high:.2f}). Both sides run slower here, the server having one core.", ""] + pairs_table(pinned_pairs)
def start_table(title, runs):
    out = [title, "", "| concurrency | POST /orders per s | p50 / p99 / p99.9 ms | bare start per s | p50 / p99 / p99.9 ms |",
           "|---|---|---|---|---|"]
    for r in runs:
        out.append(f"| {r['concurrency']} | {r['post']['per_second']:.1f} | {ms(r['post']['latency_ms'])} | "
                   f"{r['bare_start']['per_second']:.1f} | {ms(r['bare_start']['latency_ms'])} |")
    return out + [""]


md += ["## Start path", ""]
if busy:
    md += start_table("Worker stopped (the API's own cost; the targets use these):", starts)
    md += start_table("Worker running (each accepted order also runs on the same cores; bare starts never run):", busy)
else:
    md += start_table("", starts)
md += ["", f"![throughput and p99 against concurrency]({os.path.basename(prefix)}.png)", ""]
if reads or listing:
    md += ["## Reads", ""]
    if reads:
        g = reads["get"]
        md.append(f"- `GET /orders/{{id}}` at 500/s: {g['per_second']:.0f}/s served, p50 / p99 / p99.9 {ms(g['latency_ms'])} ms, {g['errors']} errors")
        if reads.get("steps"):
            steps = ", ".join(f"{t['what'].rsplit(' at ', 1)[1]}: p99 {t['latency_ms']['p99']:.1f} ms"
                              + (f" ({t['per_second']:.0f}/s served)" if t["per_second"] < 0.95 * float(t["what"].rsplit(" at ", 1)[1][:-2]) else "")
                              for t in reads["steps"])
            top = reads.get("highest_rate_p99_under_10ms")
            md.append(f"- highest rate with p99 under 10 ms: **{f'{top}/s' if top else 'below 500/s'}** (5 s at each: {steps})")
    if listing:
        g = listing["get_list"]
        md.append(f"- `GET /orders?limit=20` with {listing['rows']:,} orders in the table, concurrency {g['concurrency']}: "
                  f"{g['per_second']:.0f}/s, p50 / p99 {ms(g['latency_ms'])} ms")
        for name, plan in listing["explain"].items():
            md += ["", f"`{name}`:", "", "```", *plan, "```"]
    md.append("")
if soak and soak.get("samples"):
    samples = soak["samples"]
    t = [x["t"] / 60 for x in samples]
    fig, ax = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    a = ax[0][0]
    a.plot(t, [x["rss_mib"]["api"] for x in samples], label="API")
    a.plot(t, [x["rss_mib"]["worker"] for x in samples], label="worker")
    a.set_ylabel("MiB"); a.set_title("resident memory"); a.legend(); a.grid(alpha=.3); a.set_ylim(bottom=0)
    a = ax[0][1]
    final = samples[-1]["pg_tables_mib"]
    for name in sorted(final, key=final.get, reverse=True)[:5]:
        a.plot(t, [x["pg_tables_mib"].get(name, 0) for x in samples], label=f"pg {name}")
    a.plot(t, [sum(x["pg_tables_mib"].values()) for x in samples], "k", label="pg, all tables")
    a.set_ylabel("Postgres MiB"); a.set_title("database sizes"); a.grid(alpha=.3)
    if samples[-1].get("temporal_db_mib") is not None:
        b = a.twinx()
        b.plot(t, [x["temporal_db_mib"] for x in samples], "--", color="tab:gray", label="Temporal's SQLite (right)")
        b.set_ylabel("Temporal MiB")
        b.legend(loc="lower right", fontsize=7)
    a.legend(loc="upper left", fontsize=7)
    a = ax[1][0]
    a.plot(t, [x["open_workflows"] for x in samples], label="open workflows (Temporal)")
    a.plot(t, [x["open_orders"] for x in samples], ":", label="orders not at an end (read model)")
    a.set_xlabel("minutes"); a.set_title("working set"); a.legend(); a.grid(alpha=.3); a.set_ylim(bottom=0)
    a = ax[1][1]
    a.plot(t, [x["post_ms"]["p99"] if x["post_ms"]["count"] else None for x in samples], label="POST /orders p99")
    a.plot(t, [x["delivered_p99_ms"] for x in samples], label="accepted -> delivered p99")
    a.set_yscale("log"); a.set_xlabel("minutes"); a.set_ylabel("ms"); a.set_title("latency per sample"); a.legend(); a.grid(alpha=.3)
    fig.suptitle(f"soak: {soak['rate_per_second']} orders/s for {soak['seconds'] / 60:.0f} min — "
                 f"{machine['cores']} cores, {machine['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(prefix + "-soak.png", dpi=110)
    first, last = samples[0], samples[-1]
    grown = sum(last["pg_tables_mib"].values()) - sum(first["pg_tables_mib"].values())
    posted = sum(x["posted"] for x in samples[1:])
    md += ["## Soak", "",
           f"{soak['orders']:,} orders at {soak['rate_per_second']}/s (half the whole lifecycle's end-to-end rate) for "
           f"{soak['seconds'] / 60:.0f} minutes, the simulated carrier delivering (in transit after 2 s, delivered "
           f"5 s later); a sample every {soak['sample_seconds']:.0f} s. Ends: "
           + ", ".join(f"{k} {v:,}" for k, v in sorted(soak["ends"].items()))
           + f"; {soak['stranded_after_drain']} not at an end three minutes after the load stopped.", "",
           f"Postgres tables grew {grown:.1f} MiB over the run"
           + (f", {grown * 1024 / posted:.1f} KiB per order: the records every order keeps by design"
              if posted else "") + ". Flat (targets below) compares the last quarter with the second.", "",
           f"![memory, database sizes, open workflows and p99 over the soak]({os.path.basename(prefix)}-soak.png)", ""]
if cost:
    md += ["## Cost", "", f"Peak RSS: API {cost['rss_peak_mib']['api']} MiB, worker {cost['rss_peak_mib']['worker']} MiB "
           f"(after the end-to-end run, {cost['open_workflows']} workflows open, waiting for the carrier).", "",
           "CPU seconds per 1000 orders (end-to-end run): " + ", ".join(f"{k} {v}" for k, v in cpu_per_1000.items()), ""]
if pg_statements and pg_statements["statements"]:
    md += ["## Postgres during the end-to-end run", "",
           "Top statements by execution time (pg_stat_statements). The count over `order_events` with "
           "`order_id = ANY($1)` is the generator's own progress query.", "",
           "| calls per order | mean ms | total ms | statement |", "|---|---|---|---|"]
    for st in pg_statements["statements"]:
        q = st["query"].replace("|", "\\|")
        md.append(f"| {st['calls'] / pg_statements['orders']:.2f} | {st['mean_ms']} | {st['total_ms']} | `{q}` |")
    md.append("")
gen = [r["generator"]["cpu_share_of_one_core"] for r in rows if "generator" in r]
if gen:
    md += [f"The load generator used at most {max(gen):.0%} of one core in any scenario.", ""]
md += ["## Targets", "",
       f"Beside the previous full run{f' ([`{previous_stamp}`]({previous_stamp}.md))' if previous_stamp else ''}; "
       "compare ratios more than absolute figures when the processors differ.", "",
       "| target | previous run | this run | goal | met |", "|---|---|---|---|---|"]
md += [f"| {t['target']} | {previous_targets.get(t['target'], {}).get('measured', '—')} | {t['measured']} | {t['goal']} | "
       f"{'yes' if t['met'] else '**no**'} |" for t in targets]
open(prefix + ".md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
