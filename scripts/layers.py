#!/usr/bin/env python3
"""The layer check: which part of `app/src` may import which, written once, and every
import that runs up a layer or across features outside that list reported.

Imports are read as `scripts/import-cycles.py` reads them (every `crate::…` and
`super::…` path, tests skipped) and each file belongs to a unit: its top-level folder or
file under app/src (`queues`, `server`, `error`, …). A unit may import its own files,
any unit of a lower layer, and the units its layer's row allows. Anything else must be
listed in EXCEPTIONS with its reason, or the check fails.

Usage: scripts/layers.py            check app/src; print the exceptions' count
       scripts/layers.py --table    print the allow-list as docs/ARCHITECTURE.md shows it
The check also fails when docs/ARCHITECTURE.md's copy of the table (between the
`layers:begin` and `layers:end` markers) differs from the one below.
"""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (layer, units, units of the same layer it may import, what lives there). Bottom first.
LAYERS = [
    ('1 infrastructure', ['server', 'error', 'format', 'components', 'stores', 'stored', 'reason'], 'each other',
     'state, store clients, clock, tokens, sealing, the PostgreSQL watch; errors and which store is down; enums stored as text; the reason rule; formats; UI building blocks'),
    ('2 accounts and history', ['auth', 'history', 'ingest_keys'], 'each other',
     'actors, roles, sessions, the guard; ingest keys; the hash-chained history (auth and keys record their changes there)'),
    ('3 runner, alerts, freeze', ['jobs', 'freeze', 'alerts'], 'alerts → jobs, freeze',
     'jobs and their runs, schedules; the freeze; the alert model and the self-monitor job'),
    ('4 features', ['queues', 'crons', 'backups', 'dead_letters', 'settings', 'health'], 'none',
     'one folder per feature; what two features share moves down'),
    ('5 features built on features', ['drills', 'migrations'], 'none',
     'they call the features\' public functions'),
    ('6 recovery', ['recovery', 'overview', 'incidents'], 'none',
     'both stores brought back from the repository alone, in dependency order, on the features and the upgrade; the recovery posture, from the features\' and the drills\' figures'),
    ('7 composition root', ['lib', 'registry', 'shell'], 'everything',
     'routes, the app shell, the lists of jobs, alert kinds, migrations, incident hooks'),
]

SAME_LAYER = {
    'alerts': {'jobs', 'freeze'},
}

# (importing file, imported unit, why it is allowed for now). The goal is none.
EXCEPTIONS = [
]


def load_edges():
    spec = importlib.util.spec_from_file_location(
        'import_cycles', os.path.join(ROOT, 'scripts', 'import-cycles.py'))
    module = importlib.util.module_from_spec(spec)
    argv, sys.argv = sys.argv, ['import-cycles.py']  # it reads argv only when run
    try:
        spec.loader.exec_module(module)
    finally:
        sys.argv = argv
    return module.edges(os.path.join(ROOT, 'app', 'src'))


def unit_of(path):
    rel = os.path.relpath(path, os.path.join(ROOT, 'app', 'src'))
    return rel.split(os.sep)[0].removesuffix('.rs'), rel


def allowed():
    layer_of, may = {}, {}
    for index, (_, units, _, _) in enumerate(LAYERS):
        for unit in units:
            layer_of[unit] = index
    for index, (name, units, same, _) in enumerate(LAYERS):
        below = {u for u, i in layer_of.items() if i < index}
        for unit in units:
            if same in ('each other', 'everything'):
                extra = set(units)
            else:
                extra = SAME_LAYER.get(unit, set())
            may[unit] = below | extra | {unit}
    return layer_of, may


def table():
    lines = ['| layer | units | may also import, in its layer | what lives there |',
             '|---|---|---|---|']
    for name, units, same, what in LAYERS:
        lines.append(f'| {name} | {", ".join(f"`{u}`" for u in units)} | {same} | {what} |')
    return '\n'.join(lines)


def documented_table():
    text = open(os.path.join(ROOT, 'docs', 'ARCHITECTURE.md')).read()
    begin, end = '<!-- layers:begin -->', '<!-- layers:end -->'
    if begin not in text or end not in text:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def main():
    if '--table' in sys.argv:
        print(table())
        return 0
    layer_of, may = allowed()
    graph = load_edges()
    violations, used = [], set()
    for source, targets in sorted(graph.items()):
        unit, rel = unit_of(source)
        if unit not in may:
            violations.append(f'{rel}: its unit `{unit}` is in no layer (add it to LAYERS)')
            continue
        for target in sorted(targets):
            to, to_rel = unit_of(target)
            if to in may[unit]:
                continue
            excused = [e for e in EXCEPTIONS if e[0] == rel and e[1] == to]
            if excused:
                used.add(excused[0][:2])
                continue
            violations.append(f'{rel} imports {to_rel}: `{unit}` may not import `{to}`')
    status = 0
    for line in violations:
        print('layer check: ' + line)
        status = 1
    for source, to, _ in EXCEPTIONS:
        if (source, to) not in used:
            print(f'layer check: exception {source} -> {to} is no longer needed; remove it')
            status = 1
    documented = documented_table()
    if documented != table():
        print('layer check: docs/ARCHITECTURE.md\'s table (layers:begin … layers:end) differs '
              'from scripts/layers.py; paste `scripts/layers.py --table` there')
        status = 1
    print(f'layer check: {len(EXCEPTIONS)} exceptions (each with its reason in scripts/layers.py), '
          f'{len(violations)} violations')
    return status


sys.exit(main())
