"""The ``namespace`` commands: create a namespace deliberately."""

from __future__ import annotations

from . import main
from ._common import _config, _run, console, emit_json, json_option, namespace_option, store_option


@main.group()
def namespace() -> None:
    """Create a namespace deliberately (for configs with create_namespace: false)."""


@namespace.command("create")
@store_option
@namespace_option
@json_option
def namespace_create(store: str | None, namespace: str | None, as_json: bool) -> None:
    """Create the namespace if it does not exist; print its epoch.

    After Redis lost a namespace's data, open stores refuse every write with
    NamespaceLostError; this starts a new epoch whose tokens are above the old ones.
    """
    import msgspec

    from ..backends.redis import RedisAggregatorStore
    from ..errors import NamespaceLostError

    cfg = _config(store)
    if cfg.redis is None:
        if as_json:
            emit_json({"namespace": namespace or cfg.namespace, "created": False, "epoch": None})
        else:
            console.print("the in-process fake creates namespaces as it uses them: nothing to do")
        return

    async def go() -> tuple[str, bool]:
        existing = msgspec.structs.replace(cfg, create_namespace=False)
        try:
            async with await RedisAggregatorStore.open(existing, namespace=namespace) as agg:
                return agg.epoch, False
        except NamespaceLostError:
            pass
        created = msgspec.structs.replace(cfg, create_namespace=True)
        async with await RedisAggregatorStore.open(created, namespace=namespace) as agg:
            return agg.epoch, True

    epoch, made = _run(go())
    name = namespace or cfg.namespace
    if as_json:
        emit_json({"namespace": name, "created": made, "epoch": epoch})
        return
    console.print(f"{'created' if made else 'exists:'} namespace {name!r} (epoch {epoch})", highlight=False)
