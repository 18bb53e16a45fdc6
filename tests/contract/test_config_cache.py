"""The config cache: operator-set task configs and AVS configs."""

from __future__ import annotations

import pytest
from _helpers import AVS_A, AVS_B

from ponos_redis import (
    AggregatorStore,
    AvsConfig,
    Consensus,
    ConsensusType,
    CurveType,
    InvalidInputError,
    NotFoundError,
    OperatorSetTaskConfig,
)

UPPER_A = "0x" + AVS_A[2:].upper()


def opset_config(**fields: object) -> OperatorSetTaskConfig:
    values: dict[str, object] = {
        "task_sla_s": 12.5,
        "curve_type": CurveType.BN254,
        "task_metadata": b"\x00\xff\xfe meta \x80",
        "consensus": Consensus(type=ConsensusType.STAKE_PROPORTION_THRESHOLD, threshold=6667),
    }
    values.update(fields)
    return OperatorSetTaskConfig(**values)  # type: ignore[arg-type]


def avs_config(**fields: object) -> AvsConfig:
    values: dict[str, object] = {
        "aggregator_operator_set_id": 0,
        "executor_operator_set_ids": [1, 2, 2**53 - 1],
        "curve_type": CurveType.ECDSA,
    }
    values.update(fields)
    return AvsConfig(**values)  # type: ignore[arg-type]


async def test_operator_set_config_round_trip(aggregator: AggregatorStore) -> None:
    config = opset_config()
    await aggregator.save_operator_set_config(AVS_A, 3, config)
    got = await aggregator.get_operator_set_config(AVS_A, 3)
    assert got == config
    assert got.consensus.type is ConsensusType.STAKE_PROPORTION_THRESHOLD
    assert got.curve_type == CurveType.BN254
    assert isinstance(got.task_metadata, bytes)


async def test_operator_set_config_defaults_round_trip(aggregator: AggregatorStore) -> None:
    config = OperatorSetTaskConfig(task_sla_s=0, curve_type=CurveType.UNKNOWN)
    await aggregator.save_operator_set_config(AVS_A, 0, config)
    got = await aggregator.get_operator_set_config(AVS_A, 0)
    assert got == config
    assert got.task_metadata == b""
    assert got.consensus == Consensus(type=ConsensusType.NONE, threshold=0)


async def test_operator_set_config_save_replaces(aggregator: AggregatorStore) -> None:
    await aggregator.save_operator_set_config(AVS_A, 3, opset_config())
    replacement = opset_config(task_sla_s=60.0, curve_type=CurveType.ECDSA, task_metadata=b"")
    await aggregator.save_operator_set_config(AVS_A, 3, replacement)
    assert await aggregator.get_operator_set_config(AVS_A, 3) == replacement


async def test_operator_set_config_missing_raises(aggregator: AggregatorStore) -> None:
    with pytest.raises(NotFoundError):
        await aggregator.get_operator_set_config(AVS_A, 3)
    await aggregator.save_operator_set_config(AVS_A, 3, opset_config())
    with pytest.raises(NotFoundError):
        await aggregator.get_operator_set_config(AVS_A, 4)
    with pytest.raises(NotFoundError):
        await aggregator.get_operator_set_config(AVS_B, 3)


async def test_operator_set_configs_are_keyed_by_avs_and_set(aggregator: AggregatorStore) -> None:
    configs = {
        (AVS_A, 1): opset_config(task_sla_s=1.0),
        (AVS_A, 11): opset_config(task_sla_s=11.0),
        (AVS_A, 111): opset_config(task_sla_s=111.0),
        (AVS_B, 1): opset_config(task_sla_s=2.0),
    }
    for (avs, set_id), config in configs.items():
        await aggregator.save_operator_set_config(avs, set_id, config)
    for (avs, set_id), config in configs.items():
        assert await aggregator.get_operator_set_config(avs, set_id) == config


async def test_operator_set_config_address_is_case_insensitive(aggregator: AggregatorStore) -> None:
    config = opset_config()
    await aggregator.save_operator_set_config(UPPER_A, 3, config)
    assert await aggregator.get_operator_set_config(AVS_A, 3) == config
    assert await aggregator.get_operator_set_config("0X" + AVS_A[2:].upper(), 3) == config
    replacement = opset_config(task_sla_s=99.0)
    await aggregator.save_operator_set_config(AVS_A, 3, replacement)
    assert await aggregator.get_operator_set_config(UPPER_A, 3) == replacement


async def test_avs_config_round_trip(aggregator: AggregatorStore) -> None:
    config = avs_config()
    await aggregator.save_avs_config(AVS_A, config)
    got = await aggregator.get_avs_config(AVS_A)
    assert got == config
    assert got.executor_operator_set_ids == [1, 2, 2**53 - 1]


async def test_avs_config_empty_executor_sets(aggregator: AggregatorStore) -> None:
    config = avs_config(executor_operator_set_ids=[])
    await aggregator.save_avs_config(AVS_A, config)
    assert await aggregator.get_avs_config(AVS_A) == config


async def test_avs_config_save_replaces(aggregator: AggregatorStore) -> None:
    await aggregator.save_avs_config(AVS_A, avs_config())
    replacement = avs_config(aggregator_operator_set_id=5, executor_operator_set_ids=[7], curve_type="bn254")
    await aggregator.save_avs_config(AVS_A, replacement)
    got = await aggregator.get_avs_config(AVS_A)
    assert got.aggregator_operator_set_id == 5
    assert got.executor_operator_set_ids == [7]
    assert got.curve_type == CurveType.BN254


async def test_avs_config_missing_raises(aggregator: AggregatorStore) -> None:
    with pytest.raises(NotFoundError):
        await aggregator.get_avs_config(AVS_A)
    await aggregator.save_avs_config(AVS_B, avs_config())
    with pytest.raises(NotFoundError):
        await aggregator.get_avs_config(AVS_A)


async def test_avs_config_address_is_case_insensitive(aggregator: AggregatorStore) -> None:
    config = avs_config()
    await aggregator.save_avs_config(UPPER_A, config)
    assert await aggregator.get_avs_config(AVS_A) == config
    assert await aggregator.get_avs_config(UPPER_A) == config


async def test_avs_config_and_operator_set_config_do_not_collide(aggregator: AggregatorStore) -> None:
    await aggregator.save_avs_config(AVS_A, avs_config())
    with pytest.raises(NotFoundError):
        await aggregator.get_operator_set_config(AVS_A, 0)
    await aggregator.save_operator_set_config(AVS_B, 0, opset_config())
    with pytest.raises(NotFoundError):
        await aggregator.get_avs_config(AVS_B)


@pytest.mark.parametrize("bad", ["0x1234", "0x" + "gg" * 20, "ab" * 20, "", "0x" + "ab" * 21])
async def test_config_cache_bad_address_raises(aggregator: AggregatorStore, bad: str) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.save_operator_set_config(bad, 1, opset_config())
    with pytest.raises(InvalidInputError):
        await aggregator.get_operator_set_config(bad, 1)
    with pytest.raises(InvalidInputError):
        await aggregator.save_avs_config(bad, avs_config())
    with pytest.raises(InvalidInputError):
        await aggregator.get_avs_config(bad)


@pytest.mark.parametrize("bad", [-1, 2**53, True, 1.0, "1"])
async def test_config_cache_bad_operator_set_id_raises(aggregator: AggregatorStore, bad: object) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.save_operator_set_config(AVS_A, bad, opset_config())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await aggregator.get_operator_set_config(AVS_A, bad)  # type: ignore[arg-type]


async def test_config_cache_bad_config_raises(aggregator: AggregatorStore) -> None:
    with pytest.raises(InvalidInputError):
        await aggregator.save_operator_set_config(AVS_A, 1, avs_config())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await aggregator.save_avs_config(AVS_A, opset_config())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await aggregator.save_avs_config(AVS_A, avs_config(executor_operator_set_ids=[-1]))
    with pytest.raises(InvalidInputError):
        await aggregator.save_operator_set_config(AVS_A, 1, opset_config(task_metadata="text"))
    with pytest.raises(NotFoundError):
        await aggregator.get_avs_config(AVS_A)
    with pytest.raises(NotFoundError):
        await aggregator.get_operator_set_config(AVS_A, 1)
