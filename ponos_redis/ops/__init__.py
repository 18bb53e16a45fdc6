"""Operating on whole namespaces: export and import, backup and restore, migration.

Each function takes an open store of either backend, or what
:func:`~ponos_redis.open_aggregator_store` takes (a config, the mapping under
``storage:``, ``"memory"`` or a Redis URL); the ``ponos-redis export``,
``import``, ``backup``, ``restore`` and ``migrate`` commands call them.

- :func:`export_namespace` / :func:`import_namespace`: every record of a
  namespace as JSON lines with a header and a checksum (:mod:`.export`).
- :func:`backup_namespace` / :func:`restore_namespace`: timestamped, checksummed
  backups (the export, plus the server's RDB file where it can be copied),
  pruned to the newest N; restore into an empty namespace (:mod:`.backup`).
- :func:`migrate_namespace`: move a namespace to this library's schema version,
  resumably (:mod:`.migrate`).

(:mod:`.inspect`, the read-only views of ``ponos-redis status`` and its kin, is
imported on its own.)
"""

from .backup import BackupReport, RestoreReport, backup_namespace, list_backups, restore_namespace
from .export import ExportReport, ImportReport, export_namespace, import_namespace, read_file
from .migrate import MIGRATIONS, Migration, MigrationReport, migrate_namespace

__all__ = [
    "MIGRATIONS",
    "BackupReport",
    "ExportReport",
    "ImportReport",
    "Migration",
    "MigrationReport",
    "RestoreReport",
    "backup_namespace",
    "export_namespace",
    "import_namespace",
    "list_backups",
    "migrate_namespace",
    "read_file",
    "restore_namespace",
]
