"""The installed pytest plugin, as a user's project sees it: run in a throwaway
project (pytester, in a subprocess), with nothing of this repository's
conftest or pyproject around it."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

USERS_TESTS = textwrap.dedent(
    """
    import pytest

    from ponos_redis import MemoryAggregatorStore, TaskStatus
    from ponos_redis.testing import make_task


    @pytest.fixture
    def redis_url():
        return "the project's own redis_url"


    @pytest.fixture
    def redis_namespace():
        return "the project's own redis_namespace"


    def test_own_fixtures_are_untouched(redis_url, redis_namespace, ponos_redis_namespace):
        assert redis_url == "the project's own redis_url"
        assert redis_namespace == "the project's own redis_namespace"
        assert ponos_redis_namespace.startswith("t-test_own_fixtures")


    @pytest.mark.asyncio
    async def test_memory_stores_follow_the_clock(
        ponos_backend, ponos_aggregator_store, ponos_executor_store, ponos_clock
    ):
        assert ponos_backend == "memory"
        assert isinstance(ponos_aggregator_store, MemoryAggregatorStore)
        await ponos_aggregator_store.save_task(make_task("t-1"))
        [claimed] = await ponos_aggregator_store.claim_tasks("replica-1", limit=1, lease_s=30)
        ponos_clock.advance(31)
        assert await ponos_aggregator_store.reap_expired_leases() == 1
        assert (await ponos_aggregator_store.get_task("t-1")).status is TaskStatus.PENDING
        assert await ponos_executor_store.mark_task_processed("t-1")
        assert not await ponos_executor_store.mark_task_processed("t-1")


    @pytest.mark.asyncio
    async def test_each_test_has_its_own_namespace(ponos_aggregator_store):
        assert await ponos_aggregator_store.list_pending_tasks() == []


    @pytest.mark.ponos_backend("redis")
    @pytest.mark.asyncio
    async def test_redis_by_marker(ponos_backend, ponos_aggregator_store, ponos_executor_store):
        assert ponos_backend == "redis"
        assert type(ponos_aggregator_store).__name__ == "RedisAggregatorStore"
        await ponos_aggregator_store.save_task(make_task("t-1"))
        [claimed] = await ponos_aggregator_store.claim_tasks("replica-1", limit=1, lease_s=30)
        await ponos_aggregator_store.complete_task("t-1", claimed.token)
        assert (await ponos_aggregator_store.get_task("t-1")).status is TaskStatus.COMPLETED
        assert await ponos_executor_store.mark_task_processed("t-1")
        assert await ponos_executor_store.is_task_processed("t-1")
    """
)


@pytest.fixture
def users_project(
    pytester: pytest.Pytester, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """A project with its own ``redis_url`` fixture; its Redis tests use this session's server."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n')
    pytester.makepyfile(test_users=USERS_TESTS)
    monkeypatch.setenv("PONOS_TEST_REDIS_URL", redis_url)
    return pytester


@pytest.mark.timeout(120)
def test_fixtures_in_a_users_project(users_project: pytest.Pytester) -> None:
    result = users_project.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", "--strict-markers")
    result.assert_outcomes(passed=4)


@pytest.mark.timeout(120)
def test_backend_option_moves_the_unmarked_tests_to_redis(users_project: pytest.Pytester) -> None:
    result = users_project.runpytest_subprocess(
        "-p", "no:cacheprovider", "--ponos-backend=redis", "-k", "memory_stores or by_marker"
    )
    # The memory test now gets a Redis store: its isinstance check fails, the marked test still passes.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*assert 'redis' == 'memory'*"])


@pytest.mark.timeout(120)
def test_nothing_of_this_repository_reaches_a_users_run(pytester: pytest.Pytester) -> None:
    """Only the plugin's own ``ponos_`` names: no ``--soak``, no ``soak`` marker, no bare ``redis_url``."""
    pytester.makepyfile(
        test_theirs="""
        import pytest

        @pytest.mark.soak
        def test_marked():
            pass
        """,
        test_ours="""
        import pytest

        @pytest.mark.ponos_backend("redis")
        def test_marked():
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--soak")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unrecognized arguments: --soak*"])

    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--strict-markers", "--continue-on-collection-errors"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*'soak' not found in `markers` configuration option*"])

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fixtures")
    fixtures = {line.split()[0] for line in result.stdout.lines if line[:1].isalpha() and " -- " in line}
    assert {name for name in fixtures if "ponos" in name or "redis" in name} == {
        "ponos_aggregator_store",
        "ponos_backend",
        "ponos_clock",
        "ponos_executor_store",
        "ponos_redis_namespace",
        "ponos_redis_url",
    }
