"""The executor store: performers, inflight tasks, deployments, de-duplication."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from _helpers import (
    AVS_A,
    AVS_B,
    OPERATOR,
    START,
    ExecutorFactory,
    make_deployment,
    make_inflight,
    make_performer,
)

from ponos_redis import (
    DeploymentStatus,
    EnvironmentVar,
    ExecutorStore,
    InvalidInputError,
    InvalidTransitionError,
    ManualClock,
    NotFoundError,
)
from ponos_redis.transitions import DEPLOYMENT_TRANSITIONS

DP, DD, DR, DF = (
    DeploymentStatus.PENDING,
    DeploymentStatus.DEPLOYING,
    DeploymentStatus.RUNNING,
    DeploymentStatus.FAILED,
)
PAIRS = list(itertools.product(DeploymentStatus, DeploymentStatus))
ALLOWED = [(a, b) for a, b in PAIRS if b in DEPLOYMENT_TRANSITIONS[a]]
REFUSED = [(a, b) for a, b in PAIRS if a != b and b not in DEPLOYMENT_TRANSITIONS[a]]
FINAL = {DR, DF}
PLUS_2 = timezone(timedelta(hours=2))


def _pair_id(pair: tuple[object, object]) -> str:
    return f"{pair[0]}-{pair[1]}"


# ---------------------------------------------------------------- performers


async def test_performer_round_trip(executor: ExecutorStore) -> None:
    state = make_performer(
        "perf-ワ-1",
        avs_address="0x" + "AB" * 20,
        resource_id="res-1",
        status="running",
        artifact_registry="registry.example/avs",
        artifact_digest="sha256:" + "f" * 64,
        artifact_tag="v1.2.3",
        deployment_mode="docker",
        created_at=datetime(2026, 1, 1, 2, 0, 0, 123_456, tzinfo=PLUS_2),
        last_health_check=datetime(2026, 1, 1, 0, 5, tzinfo=UTC),
        container_healthy=True,
        application_healthy=False,
        network_name="ponos-net",
        container_endpoint="10.0.0.2:8080",
        container_hostname="perf-1.local",
        environment_vars=[
            EnvironmentVar(name="A", value="1"),
            EnvironmentVar(name="SECRET", value_from_env="HOST_SECRET"),
            EnvironmentVar(name="EMPTY"),
        ],
    )
    await executor.save_performer_state(state)
    got = await executor.get_performer_state("perf-ワ-1")
    assert got.avs_address == AVS_A
    assert got.created_at == datetime(2026, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.last_health_check == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert got.container_healthy is True
    assert got.application_healthy is False
    assert got.environment_vars == state.environment_vars
    for field in (
        "performer_id",
        "resource_id",
        "status",
        "artifact_registry",
        "artifact_digest",
        "artifact_tag",
        "deployment_mode",
        "network_name",
        "container_endpoint",
        "container_hostname",
    ):
        assert getattr(got, field) == getattr(state, field), field


async def test_performer_defaults_round_trip(executor: ExecutorStore) -> None:
    state = make_performer("p")
    await executor.save_performer_state(state)
    got = await executor.get_performer_state("p")
    assert got == state
    assert got.last_health_check is None
    assert got.environment_vars == []


async def test_performer_save_replaces(executor: ExecutorStore) -> None:
    await executor.save_performer_state(make_performer("p", status="starting"))
    replacement = make_performer("p", status="healthy", avs_address=AVS_B, container_healthy=True)
    await executor.save_performer_state(replacement)
    assert await executor.get_performer_state("p") == replacement
    assert len(await executor.list_performer_states()) == 1


async def test_list_performers_sorted_by_id(executor: ExecutorStore) -> None:
    assert await executor.list_performer_states() == []
    for pid in ("p-c", "p-a", "p-b", "p-aa"):
        await executor.save_performer_state(make_performer(pid))
    assert [p.performer_id for p in await executor.list_performer_states()] == ["p-a", "p-aa", "p-b", "p-c"]


async def test_delete_performer(executor: ExecutorStore) -> None:
    await executor.save_performer_state(make_performer("p1"))
    await executor.save_performer_state(make_performer("p2"))
    await executor.delete_performer_state("p1")
    with pytest.raises(NotFoundError):
        await executor.get_performer_state("p1")
    assert [p.performer_id for p in await executor.list_performer_states()] == ["p2"]
    with pytest.raises(NotFoundError):
        await executor.delete_performer_state("p1")


async def test_missing_performer_raises(executor: ExecutorStore) -> None:
    with pytest.raises(NotFoundError):
        await executor.get_performer_state("nope")
    with pytest.raises(NotFoundError):
        await executor.delete_performer_state("nope")


# ---------------------------------------------------------------- inflight tasks


async def test_inflight_round_trip(executor: ExecutorStore) -> None:
    task = make_inflight(
        "タスク-1",
        avs_address="0X" + "AB" * 20,
        operator_address="0x" + OPERATOR[2:].upper(),
        received_at=datetime(2026, 1, 1, 2, 0, 0, 999_999, tzinfo=PLUS_2),
        status="executing",
        aggregator_address="Aggregator.Example:9000",
        operator_set_id=2**53 - 1,
    )
    await executor.save_inflight_task(task)
    got = await executor.get_inflight_task("タスク-1")
    assert got.task_id == "タスク-1"
    assert got.avs_address == AVS_A
    assert got.operator_address == OPERATOR
    assert got.received_at == datetime(2026, 1, 1, 0, 0, 0, 999_000, tzinfo=UTC)
    assert got.received_at.utcoffset() == timedelta(0)
    assert got.status == "executing"
    assert got.aggregator_address == "Aggregator.Example:9000"
    assert got.operator_set_id == 2**53 - 1


async def test_inflight_defaults_round_trip(executor: ExecutorStore) -> None:
    task = make_inflight("i1")
    await executor.save_inflight_task(task)
    assert await executor.get_inflight_task("i1") == task


async def test_inflight_save_replaces(executor: ExecutorStore) -> None:
    await executor.save_inflight_task(make_inflight("i1", status="received"))
    replacement = make_inflight("i1", status="done", operator_set_id=4)
    await executor.save_inflight_task(replacement)
    assert await executor.get_inflight_task("i1") == replacement
    assert len(await executor.list_inflight_tasks()) == 1


async def test_list_inflight_sorted_by_id(executor: ExecutorStore) -> None:
    assert await executor.list_inflight_tasks() == []
    for tid in ("t3", "t1", "t2", "t10"):
        await executor.save_inflight_task(make_inflight(tid))
    assert [t.task_id for t in await executor.list_inflight_tasks()] == ["t1", "t10", "t2", "t3"]


async def test_delete_inflight(executor: ExecutorStore) -> None:
    await executor.save_inflight_task(make_inflight("i1"))
    await executor.save_inflight_task(make_inflight("i2"))
    await executor.delete_inflight_task("i1")
    with pytest.raises(NotFoundError):
        await executor.get_inflight_task("i1")
    assert [t.task_id for t in await executor.list_inflight_tasks()] == ["i2"]
    with pytest.raises(NotFoundError):
        await executor.delete_inflight_task("i1")


async def test_missing_inflight_raises(executor: ExecutorStore) -> None:
    with pytest.raises(NotFoundError):
        await executor.get_inflight_task("nope")
    with pytest.raises(NotFoundError):
        await executor.delete_inflight_task("nope")


async def test_performers_and_inflight_do_not_collide(executor: ExecutorStore) -> None:
    await executor.save_performer_state(make_performer("same-id"))
    with pytest.raises(NotFoundError):
        await executor.get_inflight_task("same-id")
    assert await executor.list_inflight_tasks() == []


# ---------------------------------------------------------------- deployments


async def test_deployment_round_trip(executor: ExecutorStore, clock: ManualClock) -> None:
    deployment = make_deployment(
        "dep-1",
        avs_address="0x" + "AB" * 20,
        started_at=datetime(2025, 12, 31, 23, 0, 0, 500_500, tzinfo=timezone(timedelta(hours=-1))),
        error="",
    )
    clock.advance(1)
    await executor.save_deployment(deployment)
    got = await executor.get_deployment("dep-1")
    assert got.avs_address == AVS_A
    assert got.status == DP
    assert got.started_at == datetime(2026, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)
    assert got.completed_at is None
    assert got.artifact_registry == deployment.artifact_registry
    assert got.artifact_digest == deployment.artifact_digest
    assert got.error == ""
    history = await executor.list_deployment_history("dep-1")
    assert len(history) == 1
    assert history[0].deployment_id == "dep-1"
    assert history[0].status == DP
    assert history[0].at == START + timedelta(seconds=1)
    assert history[0].error == ""


async def test_deployment_saved_in_any_status_with_error(executor: ExecutorStore) -> None:
    deployment = make_deployment("d", status=DF, completed_at=START, error="image not found")
    await executor.save_deployment(deployment)
    assert await executor.get_deployment("d") == deployment
    [event] = await executor.list_deployment_history("d")
    assert (event.status, event.error) == (DF, "image not found")


async def test_deployment_save_replaces_and_adds_history(executor: ExecutorStore, clock: ManualClock) -> None:
    await executor.save_deployment(make_deployment("d"))
    clock.advance(1)
    replacement = make_deployment("d", status=DD, artifact_digest="sha256:" + "1" * 64)
    await executor.save_deployment(replacement)
    assert await executor.get_deployment("d") == replacement
    history = await executor.list_deployment_history("d")
    assert [(e.status, e.at) for e in history] == [(DP, START), (DD, START + timedelta(seconds=1))]


@pytest.mark.parametrize(("current", "target"), ALLOWED, ids=_pair_id)
async def test_allowed_deployment_transition(
    executor: ExecutorStore, clock: ManualClock, current: DeploymentStatus, target: DeploymentStatus
) -> None:
    await executor.save_deployment(make_deployment("d", status=current))
    clock.advance(5)
    await executor.update_deployment_status("d", target)
    got = await executor.get_deployment("d")
    assert got.status == target
    if target in FINAL:
        assert got.completed_at == START + timedelta(seconds=5)
    else:
        assert got.completed_at is None
    history = await executor.list_deployment_history("d")
    assert [(e.status, e.at) for e in history] == [(current, START), (target, START + timedelta(seconds=5))]


@pytest.mark.parametrize(("current", "target"), REFUSED, ids=_pair_id)
async def test_refused_deployment_transition(
    executor: ExecutorStore, clock: ManualClock, current: DeploymentStatus, target: DeploymentStatus
) -> None:
    await executor.save_deployment(make_deployment("d", status=current))
    before = await executor.get_deployment("d")
    history_before = await executor.list_deployment_history("d")
    clock.advance(5)
    with pytest.raises(InvalidTransitionError):
        await executor.update_deployment_status("d", target, error="nope")
    assert await executor.get_deployment("d") == before
    assert await executor.list_deployment_history("d") == history_before


@pytest.mark.parametrize("status", list(DeploymentStatus))
async def test_deployment_update_to_same_status_is_a_noop(
    executor: ExecutorStore, clock: ManualClock, status: DeploymentStatus
) -> None:
    await executor.save_deployment(make_deployment("d", status=status))
    before = await executor.get_deployment("d")
    clock.advance(5)
    await executor.update_deployment_status("d", status)
    assert await executor.get_deployment("d") == before
    assert len(await executor.list_deployment_history("d")) == 1


async def test_deployment_full_life(executor: ExecutorStore, clock: ManualClock) -> None:
    await executor.save_deployment(make_deployment("d"))
    clock.advance(1)
    await executor.update_deployment_status("d", DD)
    clock.advance(1)
    await executor.update_deployment_status("d", DD)  # no-op
    clock.advance(1)
    await executor.update_deployment_status("d", DR)
    got = await executor.get_deployment("d")
    assert got.status == DR
    assert got.completed_at == START + timedelta(seconds=3)
    assert got.error == ""
    history = await executor.list_deployment_history("d")
    assert [(e.deployment_id, e.status, e.at) for e in history] == [
        ("d", DP, START),
        ("d", DD, START + timedelta(seconds=1)),
        ("d", DR, START + timedelta(seconds=3)),
    ]
    with pytest.raises(InvalidTransitionError):
        await executor.update_deployment_status("d", DF)


async def test_deployment_failure_records_the_error(executor: ExecutorStore, clock: ManualClock) -> None:
    await executor.save_deployment(make_deployment("d"))
    await executor.update_deployment_status("d", DD)
    clock.advance(2)
    await executor.update_deployment_status("d", DF, error="image pull failed")
    got = await executor.get_deployment("d")
    assert got.status == DF
    assert got.error == "image pull failed"
    assert got.completed_at == START + timedelta(seconds=2)
    history = await executor.list_deployment_history("d")
    assert history[-1].status == DF
    assert history[-1].error == "image pull failed"


async def test_deployment_error_kept_when_not_given(executor: ExecutorStore) -> None:
    await executor.save_deployment(make_deployment("d", error="retrying pull"))
    await executor.update_deployment_status("d", DD)
    assert (await executor.get_deployment("d")).error == "retrying pull"


async def test_deployment_status_as_string(executor: ExecutorStore) -> None:
    await executor.save_deployment(make_deployment("d"))
    await executor.update_deployment_status("d", "deploying")  # type: ignore[arg-type]
    assert (await executor.get_deployment("d")).status == DD


async def test_deployment_unknown_status_raises(executor: ExecutorStore) -> None:
    await executor.save_deployment(make_deployment("d"))
    with pytest.raises(InvalidInputError):
        await executor.update_deployment_status("d", "exploded")  # type: ignore[arg-type]
    assert (await executor.get_deployment("d")).status == DP


async def test_deployments_are_independent(executor: ExecutorStore) -> None:
    await executor.save_deployment(make_deployment("d1"))
    await executor.save_deployment(make_deployment("d2"))
    await executor.update_deployment_status("d1", DF, error="x")
    assert (await executor.get_deployment("d2")).status == DP
    assert len(await executor.list_deployment_history("d2")) == 1
    assert len(await executor.list_deployment_history("d1")) == 2


async def test_missing_deployment_raises(executor: ExecutorStore) -> None:
    with pytest.raises(NotFoundError):
        await executor.get_deployment("nope")
    with pytest.raises(NotFoundError):
        await executor.update_deployment_status("nope", DD)
    with pytest.raises(NotFoundError):
        await executor.list_deployment_history("nope")


# ---------------------------------------------------------------- de-duplication


async def test_mark_task_processed(executor: ExecutorStore) -> None:
    assert await executor.is_task_processed("t1") is False
    assert await executor.mark_task_processed("t1") is True
    assert await executor.is_task_processed("t1") is True
    assert await executor.mark_task_processed("t1") is False
    assert await executor.is_task_processed("t1") is True
    assert await executor.is_task_processed("t2") is False
    assert await executor.mark_task_processed("t2") is True


async def test_processed_markers_by_id_prefix_are_independent(executor: ExecutorStore) -> None:
    assert await executor.mark_task_processed("1") is True
    for other in ("17000", "11", "10", "タスク"):
        assert await executor.is_task_processed(other) is False
        assert await executor.mark_task_processed(other) is True


async def test_processed_marker_expires(make_executor: ExecutorFactory, clock: ManualClock) -> None:
    # NOTE: on the Redis backend a marker's TTL may be enforced by the server's
    # real time rather than the injected clock; this test moves only the clock.
    store = await make_executor(processed_ttl_s=60)
    assert await store.mark_task_processed("t1") is True
    clock.advance(59)
    assert await store.is_task_processed("t1") is True
    assert await store.mark_task_processed("t1") is False
    clock.advance(60 + 1)
    assert await store.is_task_processed("t1") is False
    assert await store.mark_task_processed("t1") is True
    assert await store.is_task_processed("t1") is True


async def test_processed_markers_shared_by_replicas(make_executor: ExecutorFactory, namespace: str) -> None:
    a = await make_executor()
    b = await make_executor()
    other = await make_executor(namespace=f"{namespace}-other")
    assert await a.mark_task_processed("t1") is True
    assert await b.mark_task_processed("t1") is False
    assert await b.is_task_processed("t1") is True
    assert await other.is_task_processed("t1") is False
