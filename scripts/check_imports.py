"""The package's shape, measured: import cycles, layers, the longest modules and functions, who asks whose code runs.

    python scripts/check_imports.py          # prints the report; exits with 1 on a cycle, a layer crossed, a
                                             # module over the line budget, or a variable `_` beside gettext's
                                             # `_` (make lint runs it)

Every import in mae/ counts, at module level or inside a function. The layers (what each part may import of mae)
are written below, as each sub-package's docstring says; a library module never imports a job.
"""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mae"
JOBS = (
    "mae.pretrain",
    "mae.linprobe",
    "mae.finetune",
    "mae.classify",
    "mae.robustness",
    "mae.submit",
    "mae.convert",
    "mae.demo",
)
# What each part may import of mae, besides itself (the first matching prefix decides).
LAYERS = {
    "mae.i18n": (),  # the learner's language: anything that talks to a learner may use it
    "mae.impl": ("mae.i18n",),
    "mae.optional": (),
    "mae.models": ("mae.impl",),
    "mae.data": (),
    "mae.checkpoint": ("mae.models", "mae.optional"),
    "mae.engine": ("mae.checkpoint", "mae.data", "mae.models"),
    "mae.hf_interop": ("mae.checkpoint", "mae.models", "mae.optional"),
    "mae.timm_interop": ("mae.checkpoint",),
    "mae.evaluation": ("mae.engine.precision", "mae.models"),
    "mae.benchmarks": (),  # the robustness benchmarks' layouts and arithmetic (timm's class lists)
    # ImageNet-C's corruption functions on images in memory, and their pictures
    "mae.corruptions": ("mae.benchmarks", "mae.data", "mae.i18n"),
    "mae.reconstruction": ("mae.data", "mae.models"),
    "mae.inpainting": ("mae.data", "mae.reconstruction"),
    "mae.attention_maps": ("mae.i18n", "mae.models"),
    "mae.visualize": (
        "mae.attention_maps",
        "mae.data",
        "mae.i18n",
        "mae.models",
        "mae.reconstruction",
        "mae.inpainting",
    ),
    "mae.widgets": ("mae.i18n", "mae.visualize"),
    "mae.shifted_digits": (
        "mae.benchmarks",
        "mae.checkpoint",
        "mae.corruptions",
        "mae.data",
        "mae.evaluation",
        "mae.i18n",
        "mae.models",
    ),
    "mae.checks": ("mae.i18n", "mae.impl", "mae.models"),
    "mae.course": ("mae.checks", "mae.i18n", "mae.impl", "mae.models"),
    "mae": ("mae.checkpoint", "mae.impl", "mae.models"),  # the package's __init__
    **{job: ("mae",) for job in JOBS},  # a job may use anything
}
MAX_LINES = 400
# Calls that read the whose-code switch (mae.impl's choice), as opposed to setting it (select).
SWITCH_READERS = ("selected", "learner_package", "active", "components")


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name, path, known):
    """The mae modules `name` imports (anywhere in the file), as found in `known`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "mae"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base.split(".")[0] != "mae":
                continue
            for alias in node.names:  # `from . import x`: the module x if there is one
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def cycles(graph):
    """Every strongly connected group of more than one module (Tarjan), each a sorted list."""
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def _part(name):
    return next(
        (
            prefix
            for prefix in sorted(LAYERS, key=len, reverse=True)
            if name == prefix or name.startswith(prefix + ".")
        ),
        None,
    )


def layer_violations(graph):
    problems = []
    for name, targets in graph.items():
        part = _part(name)
        if part is None:
            problems.append(f"{name}: in no layer (add it to LAYERS in scripts/check_imports.py)")
            continue
        for target in sorted(targets):
            if target == part or target.startswith(part + ".") or target == "mae" and name.startswith("mae."):
                continue  # within its own part; `from .. import x` of a submodule reads as the package
            if not any(target == allowed or target.startswith(allowed + ".") for allowed in LAYERS[part]):
                problems.append(f"{name} imports {target}, which {part} may not")
            if target in JOBS and name not in JOBS:
                problems.append(f"{name} (library) imports the job {target}")
    return problems


def longest_functions(paths, count=3):
    found = []
    for name, path in paths.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
    return sorted(found, reverse=True)[:count]


def switch_readers(paths):
    """Modules outside mae.impl that call a function of mae.impl reading the switch (impl.selected(), ...)."""
    readers = set()
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        bare = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").endswith("impl") for alias in node.names}  # fmt: skip
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            through_module = isinstance(function, ast.Attribute) and getattr(function.value, "id", "") in (
                "impl",
                "implementation",
            )
            called = (
                function.attr
                if through_module
                else getattr(function, "id", None)
                if function.__class__ is ast.Name
                else None
            )
            if called in SWITCH_READERS and (through_module or called in bare) and name != "mae.impl":
                readers.add(name)
    return sorted(readers)


def shadowed_translations(paths):
    """'module:line' wherever a module that imports gettext's `_` (mae.i18n) also names a variable `_`: the
    variable hides the function, and the next message raises "'int' object is not callable"."""
    found = []
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        if not any(
            isinstance(n, ast.ImportFrom) and any(a.name == "_" for a in n.names) for n in ast.walk(tree)
        ):
            continue
        found += [
            f"{name}:{node.lineno}: a variable named _ hides the translation function (name it, or index the tuple)"
            for node in ast.walk(tree)
            if (isinstance(node, ast.Name) and node.id == "_" and isinstance(node.ctx, ast.Store))
            or (isinstance(node, ast.arg) and node.arg == "_")
            or (isinstance(node, ast.ExceptHandler) and node.name == "_")
            or (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == "_")
            or (isinstance(node, ast.alias) and node.asname == "_" and node.name != "_")
        ]
    return found


def main():
    paths = modules()
    graph = {name: imports(name, path, paths) for name, path in paths.items()}
    # A package's __init__ importing its own modules, and those importing siblings, is not a cycle through the
    # package: `from .x import y` inside the package reads as the sibling x, never as the package itself.
    found = cycles(graph)
    problems = layer_violations(graph) + shadowed_translations(paths)
    sizes = sorted(((len(p.read_text().splitlines()), n) for n, p in paths.items()), reverse=True)
    over = [f"{name}: {lines} lines (budget {MAX_LINES})" for lines, name in sizes if lines > MAX_LINES]
    print(
        f"{len(paths)} modules in mae/; import cycles: {len(found)}"
        + "".join(f"\n  cycle: {' -> '.join(g)}" for g in found)
    )
    print("longest modules: " + ", ".join(f"{n} {lines}" for lines, n in sizes[:3]))
    print("longest functions: " + ", ".join(f"{n} {lines}" for lines, n in longest_functions(paths)))
    print("modules that read the whose-code switch: " + ", ".join(switch_readers(paths)))
    for problem in problems + over:
        print(f"  {problem}")
    return 1 if found or problems or over else 0


if __name__ == "__main__":
    sys.exit(main())
