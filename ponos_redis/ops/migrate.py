"""Schema versions, and moving a namespace to this library's (``ponos-redis migrate``).

A namespace's ``meta`` hash holds the schema version of its key layout
(:data:`ponos_redis.keys.SCHEMA_VERSION`). A store refuses to open a namespace
of another version (``SchemaVersionError``: an older one names this command),
and every writing script checks the version too, so a replica of an older
library still running when a namespace moves on stops at its next write rather
than write the old layout.

A migration from version ``n`` to ``n + 1``:

1. ``migrate_begin`` sets the version to ``n + 1`` and marks the migration
   (``migration``, ``migration_cursor`` in the meta hash), in one script. From
   then on replicas of the old version stop at their next write, and stores of
   the new one refuse to open until the migration has finished, so nothing else
   writes while it runs. From version 1 it also gives the namespace a new
   epoch: replicas of the libraries that wrote version 1 check the epoch but not
   the version in their scripts, and stop on the new epoch (``NamespaceLostError``).
2. Bounded steps (one script each, at most 1,000 records) do the work and
   record how far they got in the meta hash, with the work, atomically.
3. The last step clears the mark: stores open again.

Interrupted anywhere (the process killed, Redis restarting), ``migrate`` run
again resumes at the recorded position; run when there is nothing to do, it
does nothing. Each step is idempotent, so a step retried after a lost reply
changes nothing twice.

An empty namespace of an older version is not upgraded silently on open: an
older replica may have it open, and moving the version would stop it without
anybody having decided so. ``migrate`` upgrades it in one step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import SchemaVersionError
from ..keys import SCHEMA_VERSION
from ._target import StoreOrConfig, open_namespace

__all__ = ["MIGRATIONS", "Migration", "MigrationReport", "migrate_namespace"]

Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class Migration:
    """One step of the schema: from ``from_version`` to ``to_version``.

    Attributes:
        step: the Lua script that does one bounded step of the work.
        description: what it does, for ``migrate --dry-run``.
    """

    from_version: int
    to_version: int
    step: str
    description: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        from_version=1,
        to_version=2,
        step="migrate_chain_index",
        description=(
            "build the per-chain task index chain:<chain_id>:tasks for the tasks saved before it existed "
            "(fail_orphaned_tasks reads it after a reorg), walking every task of the namespace"
        ),
    ),
)


@dataclass(frozen=True)
class MigrationReport:
    """What a migration did (or, with ``dry_run``, would do).

    Attributes:
        namespace: the namespace.
        from_version: its schema version before (for a resumed migration: the
            version it was migrating from).
        to_version: its schema version after (this library's).
        migrations: the migrations run (or to run), as ``"1->2: <description>"``.
        tasks: task records the migrations walk (the namespace's tasks).
        examined: task records walked.
        changed: index entries added.
        resumed: an interrupted migration was finished.
        dry_run: nothing was written.
        seconds: how long it took.
    """

    namespace: str
    from_version: int
    to_version: int
    migrations: list[str] = field(default_factory=list)
    tasks: int = 0
    examined: int = 0
    changed: int = 0
    resumed: bool = False
    dry_run: bool = False
    seconds: float = 0.0

    @property
    def up_to_date(self) -> bool:
        """Nothing was (or is) to be done."""
        return not self.migrations


def _chain(version: int) -> list[Migration]:
    steps: list[Migration] = []
    while version < SCHEMA_VERSION:
        found = next((m for m in MIGRATIONS if m.from_version == version), None)
        if found is None:
            raise SchemaVersionError(f"no migration from schema version {version}")
        steps.append(found)
        version = found.to_version
    return steps


async def migrate_namespace(
    store_or_config: StoreOrConfig,
    *,
    namespace: str | None = None,
    dry_run: bool = False,
    batch: int = 1000,
    progress: Progress | None = None,
) -> MigrationReport:
    """Move a namespace to this library's schema version, resumably.

    Args:
        store_or_config: a config, mapping, ``"memory"`` or Redis URL (opened
            without creating the namespace and whatever its version), or an
            open store (which keeps working afterwards; stores opened on the
            namespace elsewhere stop at their next write).
        namespace: overrides the config's namespace.
        dry_run: say what would be done, write nothing.
        batch: task records per step (at most 1,000).
        progress: called as ``progress("migrate", done, total)`` after each step.

    Returns:
        what was (or would be) done; ``up_to_date`` when nothing.

    Raises:
        SchemaVersionError: the namespace is of a newer version than this library's.
        NamespaceLostError: the namespace does not exist (Redis).
    """
    started = time.perf_counter()
    async with open_namespace(store_or_config, namespace, "schema") as target:
        version, under_way = await target.schema()
        resumed = bool(under_way)
        if under_way:
            first, _, _ = under_way.partition("->")
            version = int(first)
        todo = _chain(version)
        tasks = await target.task_count() if todo else 0
        names = [f"{m.from_version}->{m.to_version}: {m.description}" for m in todo]
        if dry_run or not todo:
            return MigrationReport(
                namespace=target.namespace,
                from_version=version,
                to_version=SCHEMA_VERSION if todo else version,
                migrations=names,
                tasks=tasks,
                resumed=resumed,
                dry_run=dry_run,
                seconds=time.perf_counter() - started,
            )
        examined = changed = 0
        for migration in todo:
            await target.migrate_begin(migration)
            walked = 0
            while True:
                looked_at, added, done = await target.migrate_step(migration, batch)
                walked += looked_at
                examined += looked_at
                changed += added
                if progress is not None:
                    progress("migrate", min(walked, tasks), tasks)
                if done:
                    break
        return MigrationReport(
            namespace=target.namespace,
            from_version=version,
            to_version=SCHEMA_VERSION,
            migrations=names,
            tasks=tasks,
            examined=examined,
            changed=changed,
            resumed=resumed,
            seconds=time.perf_counter() - started,
        )
