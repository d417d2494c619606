"""The package layout's rules: imports run one way, no circles, no import-order dependence, and
the django-q2 task paths stored before the move into packages keep working."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from batches import services
from tests.helpers import engine as engine_helpers

fake = engine_helpers.fake
enqueued = engine_helpers.enqueued

BATCHES = Path(settings.BASE_DIR) / "batches"

# Bottom to top: a module may import its own layer or a lower one, never a higher one.
LAYERS = {
    "models": 0, "prompts": 0, "providers": 0, "ingest": 0, "fake_gemini": 0, "fake_openai": 0,
    "outputs": 0, "xlsx_stream": 0, "documents": 0, "languages": 0, "fakes": 0,
    "lib": 0, "status_counts": 0,
    "limits": 1, "costs": 1, "engine": 1, "tasks": 1, "resultcache": 1, "preferences": 1,
    "row_insert": 1,
    "batchmode": 1,
    "services": 2, "exports": 2, "iterations": 2, "batch_rows": 2, "retention": 2,
    "web": 3, "api": 3, "admin": 3, "cli": 3, "management": 3, "bench": 3, "apps": 3,
    "templatetags": 3,
    # A package may place its modules on several layers; the longest matching name wins.
    "notifications": 1, "notifications.models": 0, "notifications.safety": 0,
    "notifications.signing": 0, "notifications.endpoints": 2, "notifications.payloads": 3,
    "notifications.emails": 3, "notifications.delivery": 3, "notifications.tasks": 3,
    "notifications.admin": 3,
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in BATCHES.rglob("*.py"):
        parts = path.relative_to(BATCHES.parent).with_suffix("").parts
        if "migrations" in parts or "demo" in parts:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("batches"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("batches"))
    return names


def _layer(module: str) -> int | None:
    parts = module.split(".")[1:]
    for n in range(len(parts), 0, -1):
        if (name := ".".join(parts[:n])) in LAYERS:
            return LAYERS[name]
    return None


def test_no_module_imports_a_layer_above_its_own():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        mine = _layer(name)
        for target in _imports(path, top_level_only=False):
            theirs = _layer(target)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{name} imports {target}")
    assert upward == []


def test_no_two_modules_import_each_other_in_a_circle():
    modules = _modules()
    graph = {
        name: {t for t in _imports(path, top_level_only=True) if t in modules and t != name}
        for name, path in modules.items()
    }
    # A package's own __init__ importing its submodules is its face, not a circle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffled"])
def test_every_module_imports_in_any_order(order):
    script = f"""
import os, random, pkgutil, importlib
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "batchsite.settings")
import django
django.setup()
import batches
names = sorted(m.name for m in pkgutil.walk_packages(batches.__path__, "batches.")
               if ".migrations" not in m.name)
if {order!r} == "reversed":
    names.reverse()
elif {order!r} == "shuffled":
    random.Random(12).shuffle(names)
for name in names:
    importlib.import_module(name)
print(len(names))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=settings.BASE_DIR,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 40


@pytest.mark.django_db(transaction=True)
def test_tasks_queued_under_the_old_dotted_path_still_run(fake, make_batch, enqueued):
    from django_q.tasks import async_task

    batch = make_batch(rows=[{"text": f"row {i}"} for i in range(5)])
    batch.paused = True
    batch.save(update_fields=["paused"])
    services.batch_resume(batch=batch)
    # What a queue written before the move holds: the old path, resolved by django-q2 itself.
    async_task("batches.tasks.run_slice", batch.pk, sync=True)
    batch.refresh_from_db()
    assert batch.status_counts().get("succeeded") == 5


def test_migrate_moves_an_old_rescue_schedule_to_the_new_path(db):
    from django.core.management import call_command
    from django_q.models import Schedule

    from batches.engine.tasks import RESCUE_SCHEDULE

    Schedule.objects.filter(name=RESCUE_SCHEDULE).update(func="batches.tasks.rescue")
    call_command("migrate", verbosity=0)
    assert Schedule.objects.get(name=RESCUE_SCHEDULE).func == "batches.engine.tasks.rescue"
