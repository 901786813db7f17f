"""Turns the NDJSON of scripts/bench into bench/results/<stamp>.json, .md and .png.

Usage: bench-report.py RESULTS.ndjson OUT_PREFIX [--quick]
"""
import json
import os
import platform
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
e2e2 = one("end_to_end_two_workers")
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

cpu_per_1000 = {}
if cost:
    for proc in ["api", "worker", "postgres", "temporal"]:
        used = cost["cpu_after"][proc] - cost["cpu_before"][proc]
        cpu_per_1000[proc] = round(used / cost["orders"] * 1000, 2)

targets = []


def target(name, value, goal, ok):
    targets.append({"target": name, "measured": value, "goal": goal, "met": bool(ok)})


for r in starts:
    post, bare = r["post"], r["bare_start"]
    ratio = post["per_second"] / bare["per_second"] if bare["per_second"] else 0
    p99 = post["latency_ms"]["p99"] / bare["latency_ms"]["p99"] if bare["latency_ms"]["p99"] else 0
    target(f"start path c={r['concurrency']}: throughput vs bare start", f"{ratio:.2f}x", ">= 0.9x", ratio >= 0.9)
    target(f"start path c={r['concurrency']}: p99 vs bare start", f"{p99:.2f}x", "<= 1.2x", p99 <= 1.2)
if e2e and "ours" in floors:
    r = e2e["per_second"] / floors["ours"]["per_second"]
    target("end to end vs floor (a)", f"{r:.2f}x", ">= 0.8x", r >= 0.8)
if e2e and "naive" in floors:
    r = e2e["per_second"] / floors["naive"]["per_second"]
    target("end to end vs floor (b)", f"{r:.2f}x", ">= 3x", r >= 3)
if reads:
    p99 = reads["get"]["latency_ms"]["p99"]
    target("GET /orders/{id} p99 at 500/s", f"{p99:.2f} ms", "< 5 ms", p99 < 5)
if cost:
    target("API RSS", f"{cost['rss_peak_mib']['api']} MiB", "< 64 MiB", cost["rss_peak_mib"]["api"] < 64)
    target(f"worker RSS ({cost['open_workflows']} open workflows)", f"{cost['rss_peak_mib']['worker']} MiB", "< 128 MiB",
           cost["rss_peak_mib"]["worker"] < 128)

report = {"machine": machine, "quick": quick, "floors": floors, "end_to_end": e2e, "end_to_end_two_workers": e2e2,
          "cost": cost, "cpu_seconds_per_1000_orders": cpu_per_1000, "start_path": starts, "start_path_worker_running": busy,
          "reads": reads, "postgres_statements": pg_statements,
          "list": listing, "targets": targets}
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
md += ["## End to end (first POST to last `shipped`) and floors", "",
       "| run | orders | orders/s | latency p50 / p99 ms | history events | workflow tasks |", "|---|---|---|---|---|---|"]
names = {"ours": "floor (a): OrderWorkflow, no-op activities", "naive": "floor (b): five regular activities"}
for shape, r in floors.items():
    md.append(f"| {names[shape]} | {r['workflows']} | {r['per_second']:.1f} | {ms(r['latency_ms'])} | "
              f"{r['history_events']} | {r['workflow_tasks']} |")
for label, r in [("this service, 1 worker", e2e), ("this service, 2 workers", e2e2)]:
    if r:
        l = r["accepted_to_shipped_ms"]
        md.append(f"| {label} | {r['orders']} | {r['per_second']:.1f} | {l['p50']:.1f} / {l['p99']:.1f} | "
                  f"{r['history_events']} | {r['workflow_tasks']} |")
md += ["", "History events and workflow tasks are counted up to `shipped` (ours then waits for the carrier).", ""]
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
    if listing:
        g = listing["get_list"]
        md.append(f"- `GET /orders?limit=20` with {listing['rows']:,} orders in the table, concurrency {g['concurrency']}: "
                  f"{g['per_second']:.0f}/s, p50 / p99 {ms(g['latency_ms'])} ms")
        for name, plan in listing["explain"].items():
            md += ["", f"`{name}`:", "", "```", *plan, "```"]
    md.append("")
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
md += ["## Targets", "", "| target | measured | goal | met |", "|---|---|---|---|"]
md += [f"| {t['target']} | {t['measured']} | {t['goal']} | {'yes' if t['met'] else '**no**'} |" for t in targets]
open(prefix + ".md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
