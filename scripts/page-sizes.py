#!/usr/bin/env python3
"""What the browser downloads to show each console page, from the release site.

Every page loads the shell (salvage.wasm, salvage.js, the split loader) and then its
own WASM chunks: the page's view and the pieces of code it shares with some other
pages, listed in __wasm_split_manifest.json (written by `cargo leptos build --split`).
Prints, per page, the sum over those files raw and gzip -9 (brotli is what the server
sends when the browser accepts it; gzip is the figure the goal is set in).

    scripts/page-sizes.py [target/site/pkg]
"""
import gzip
import json
import os
import re
import sys

PKG = sys.argv[1] if len(sys.argv) > 1 else "target/site/pkg"
SHELL = ["salvage.wasm", "salvage.js", "__wasm_split.______________________.js"]
# The goal: the sign-in page and the alerts page under 250 KB gzip of WASM + JS.
GOAL = 250 * 1024
GOAL_PAGES = {"/admin/login", "/admin/alerts"}
# Route view (the lazy_pages! names in app/src/lib.rs, snake case) -> the page's path.
PAGES = {
    "login": "/admin/login", "setup": "/admin/setup", "overview": "/admin",
    "alerts": "/admin/alerts", "history": "/admin/history",
    "history_entry": "/admin/history/:id", "queues": "/admin/queues",
    "crons": "/admin/crons", "backups": "/admin/backups", "drills": "/admin/drills",
    "migrations": "/admin/migrations", "dlq": "/admin/dlq",
    "delivery": "/admin/dlq/deliveries/:id", "webhooks": "/admin/settings/webhooks",
    "users": "/admin/settings/users", "ingest_keys": "/admin/settings/ingest-keys",
    "cron_secret": "/admin/settings/cron-secret", "account": "/admin/account",
}

# Pages served without the client (app/src/components/transport.rs, WITHOUT_CLIENT) load
# no part of it; those also in LIVE_REFRESH (app/src/lib.rs) load the live refresh
# (live.js and its WASM) instead. The browser tests check what the sign-in and alerts
# pages fetch.
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "app", "src")
LIVE = ["../live/live.js", "../live/live_bg.wasm"]


def paths(const, file):
    path = os.path.join(SRC, file)
    found = re.search(const + r": &\[&str\] = &\[([^\]]*)\]", open(path).read())
    if not found:
        sys.exit(f"page-sizes: no {const} list in {path}")
    return set(re.findall(r'"([^"]+)"', found.group(1)))


WITHOUT_CLIENT = paths("WITHOUT_CLIENT", os.path.join("components", "transport.rs"))
LIVE_REFRESH = paths("LIVE_REFRESH", "lib.rs")

sizes = {}


def size(name):
    """(raw, gzip -9) bytes of one file of the site."""
    if name not in sizes:
        data = open(os.path.join(PKG, name), "rb").read()
        sizes[name] = (len(data), len(gzip.compress(data, 9)))
    return sizes[name]


def total(names):
    raw = sum(size(n)[0] for n in names)
    return raw, sum(size(n)[1] for n in names)


def kb(n):
    return f"{n / 1024:,.0f} KB"


manifest_path = os.path.join(PKG, "__wasm_split_manifest.json")
if not os.path.exists(manifest_path):
    sys.exit(f"page-sizes: {manifest_path} is missing (not a --split build)")
manifest = json.load(open(manifest_path))
shell_raw, shell_gz = total(SHELL)
print(f"page sizes: WASM + JS each page loads ({PKG}; goal: sign-in and alerts under {kb(GOAL)} gzip)")
print(f"  {'shell (every page)':<32} {kb(shell_raw):>10} raw {kb(shell_gz):>10} gzip")
routes = {}
for module, chunks in manifest.items():
    route = re.fullmatch(r"__(.+)_route_view_\d+", module)
    if not route:
        sys.exit(f"page-sizes: {module} in the manifest is not a route's view")
    routes[route.group(1)] = chunks
# The admin layout is a lazy route too: a page inside it loads the layout's chunks and
# its own (a chunk both need is fetched once).
layout = routes.pop("admin", [])
rows, over = [], []
for name, chunks in routes.items():
    if name not in PAGES:
        sys.exit(f"page-sizes: the route {name} has no path in PAGES")
    page = PAGES[name]
    if page.startswith("/admin") and page not in ("/admin/login", "/admin/setup"):
        chunks = sorted(set(chunks) | set(layout))
    if page in WITHOUT_CLIENT:
        raw, gz = total(LIVE) if page in LIVE_REFRESH else (0, 0)
        rows.append((page, raw, gz, "live" if page in LIVE_REFRESH else None))
        if page in LIVE_REFRESH:
            # Reached by a link from a hydrated page, it renders in the client instead.
            raw, gz = total(SHELL + [c + ".wasm" for c in chunks])
            rows.append((f"{page} (by a link, in the client)", raw, gz, len(chunks)))
        continue
    raw, gz = total(SHELL + [c + ".wasm" for c in chunks])
    rows.append((page, raw, gz, len(chunks)))
for page, raw, gz, n in sorted(rows, key=lambda r: r[2]):
    mark = ""
    if page in GOAL_PAGES:
        mark = "  goal met" if gz <= GOAL else "  OVER THE GOAL"
        if gz > GOAL:
            over.append(page)
    what = {None: "no client: plain HTML", "live": "no client: plain HTML + the live refresh"}.get(n, f"{n} chunks")
    print(f"  {page:<32} {kb(raw):>10} raw {kb(gz):>10} gzip  ({what}){mark}")
missing = GOAL_PAGES - {r[0] for r in rows}
if missing:
    sys.exit(f"page-sizes: no chunk list for {sorted(missing)}")
