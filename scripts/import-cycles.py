#!/usr/bin/env python3
"""Lists import cycles between the source files of a crate: every `crate::…` and
`super::…` path (in `use` lines and inline) is resolved to the file that defines the
module it names, and a file that reaches itself through such paths is reported. A
module's own children (`mod x;`, `x::Item` inside its mod.rs) are not edges: a folder
may re-export what it contains. Tests are skipped (they may look anywhere).
Exits 1 when a cycle exists. Usage: scripts/import-cycles.py app/src server/src"""
import os, re, sys

def module_files(root):
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            if not name.endswith('.rs'):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)[:-3].split(os.sep)
            if rel[-1] in ('mod', 'lib', 'main'):
                rel = rel[:-1]
            files[tuple(rel)] = path
    return files

PATH = re.compile(r'\b((?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)+)')

def edges(root):
    files = module_files(root)
    graph = {path: set() for path in files.values()}
    for module, path in files.items():
        text = open(path).read()
        text = re.sub(r'(?s)#\[cfg\(test\)\]\s*mod tests \{.*', '', text)  # tests may look anywhere
        text = re.sub(r'//.*', '', text)
        # `use a::{b, c::d}` -> a::b, a::c::d
        for group in re.finditer(r'use\s+((?:crate|super)[\w:]*)::\{([^;]*)\};', text):
            for item in re.split(r'[,\s]+', group.group(2)):
                item = item.strip('{}')
                if item:
                    text += f' {group.group(1)}::{item} '
        is_mod_file = os.path.basename(path) in ('mod.rs', 'lib.rs', 'main.rs')
        for m in PATH.finditer(text):
            parts = m.group(1).split('::')
            if parts[0] == 'crate':
                target, rest = [], parts[1:]
            else:
                # `super` in a mod.rs is the parent of its folder's module; in a file
                # module it is the module's parent.
                ups = parts.count('super')
                target = list(module)[:len(module) - ups]
                rest = [p for p in parts if p != 'super']
            # the longest prefix that is a module file
            best = None
            for k in range(len(rest), -1, -1):
                candidate = tuple(target + rest[:k])
                if candidate in files:
                    best = files[candidate]
                    break
            if best and best != path:
                graph[path].add(best)
    return graph

def cycles(graph):
    found, index, low, stack, on, counter = [], {}, {}, [], set(), [0]
    def strong(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop(); on.discard(w); component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))
    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            strong(v)
    return found

def main():
    status = 0
    for root in sys.argv[1:]:
        graph = edges(root)
        if os.environ.get('SHOW_EDGES'):
            for v in sorted(graph):
                for w in sorted(graph[v]):
                    print(f'{v} -> {w}')
        for component in cycles(graph):
            status = 1
            print('import cycle: ' + ' <-> '.join(component))
    if status == 0:
        print('no import cycles in ' + ', '.join(sys.argv[1:]))
    sys.exit(status)


if __name__ == '__main__':
    main()
