"""The StateStore contract, run against both backends: the in-process one and a real
redis-server (started by the test session on a free loopback port)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from failjob_reaper.state import MemoryStore, StateStore, StateUnavailable, open_store
from standin.redis_server import RedisServer


@pytest.fixture
def store(any_store: StateStore) -> StateStore:
    return any_store


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)  # polling a condition, bounded
    return True


def test_get_of_a_missing_key_is_none(store: StateStore) -> None:
    assert store.get("missing") is None
    assert store.get_many(["a", "b"]) == [None, None]
    assert store.get_many([]) == []


def test_put_then_get_and_put_many(store: StateStore) -> None:
    store.put("a", "1", 60)
    store.put("a", "2", 60)
    store.put_many({"b": "3", "c": "4"}, 60)
    assert store.get("a") == "2"
    assert store.get_many(["a", "missing", "c"]) == ["2", None, "4"]


def test_add_sets_only_when_absent(store: StateStore) -> None:
    assert store.add("k", "first", 60) is True
    assert store.add("k", "second", 60) is False
    assert store.get("k") == "first"


def test_replace_if_is_compare_and_set(store: StateStore) -> None:
    store.put("k", "v1", 60)
    assert store.replace_if("k", "other", "v2", 60) is False
    assert store.get("k") == "v1"
    assert store.replace_if("k", "v1", "v2", 60) is True
    assert store.get("k") == "v2"
    assert store.replace_if("absent", "v1", "v2", 60) is False
    assert store.get("absent") is None


def test_delete_if_is_compare_and_delete(store: StateStore) -> None:
    store.put("k", "mine", 60)
    assert store.delete_if("k", "theirs") is False
    assert store.get("k") == "mine"
    assert store.delete_if("k", "mine") is True
    assert store.get("k") is None
    store.put("j", "x", 60)
    store.delete("j")
    store.delete("never-there")
    assert store.get("j") is None


def test_incr_counts_from_zero_and_keeps_the_ttl_of_creation(store: StateStore) -> None:
    assert store.incr("n", 1, 0.3) == 1
    assert store.incr("n", 5, 3600) == 6  # a later, longer TTL does not extend the window
    assert store.incr("n", -2, 3600) == 4
    assert eventually(lambda: store.get("n") is None)
    assert store.incr("n", 1, 60) == 1  # a new window starts at zero


def test_every_kind_of_key_expires(store: StateStore) -> None:
    store.put("s", "v", 0.1)
    store.add("a", "v", 0.1)
    store.put_many({"m": "v"}, 0.1)
    store.hash_put("h", "f", "v", 0.1)
    store.put("r", "old", 60)
    store.replace_if("r", "old", "new", 0.1)
    assert eventually(lambda: store.get_many(["s", "a", "m", "r"]) == [None] * 4
                      and store.hash_get_all("h") == {})
    assert store.add("a", "again", 60) is True  # an expired key is absent for add


def test_hash_fields(store: StateStore) -> None:
    assert store.hash_get_all("h") == {}
    assert store.hash_len("h") == 0
    store.hash_put("h", "a", "1", 60)
    store.hash_put("h", "b", "2", 60)
    store.hash_put("h", "a", "3", 60)
    assert store.hash_get_all("h") == {"a": "3", "b": "2"}
    assert store.hash_len("h") == 2
    store.hash_delete("h", "a")
    store.hash_delete("h", "missing")
    assert store.hash_get_all("h") == {"b": "2"}
    store.hash_delete("h", "b")
    assert store.hash_get_all("h") == {}


def test_hash_put_refreshes_the_ttl_of_the_whole_hash(store: StateStore) -> None:
    store.hash_put("h", "a", "1", 0.4)
    store.hash_put("h", "b", "2", 60)
    time.sleep(0.5)  # past the first TTL: the question is whether the refresh held
    assert store.hash_get_all("h") == {"a": "1", "b": "2"}


def test_hash_replace_swaps_the_whole_hash_and_none_deletes_it(store: StateStore) -> None:
    store.hash_put("h", "old", "1", 60)
    store.hash_replace("h", {"a": "1", "b": "2"}, 60)
    assert store.hash_get_all("h") == {"a": "1", "b": "2"}  # the old field is gone
    store.hash_replace("h", {}, 60)
    assert store.hash_get_all("h") == {}


def test_hash_replace_expires(store: StateStore) -> None:
    store.hash_replace("h", {"a": "1"}, 0.1)
    assert eventually(lambda: store.hash_get_all("h") == {})


def test_hash_put_many_adds_fields_to_many_hashes_each_with_a_fresh_ttl(
    store: StateStore
) -> None:
    store.hash_put("h1", "old", "0", 0.4)
    many = {f"f{i}": str(i) for i in range(2_500)}  # more than one HSET holds in Lua
    store.hash_put_many({"h1": {"a": "1", "b": "2"}, "h2": many, "h3": {},
                         "h4": {'q"\\': "é;\n"}}, 60)
    store.hash_put_many({"h1": {"a": "3"}}, 60)
    assert store.hash_get_all("h1") == {"old": "0", "a": "3", "b": "2"}
    assert store.hash_len("h2") == 2_500 and store.hash_get_all("h2") == many
    assert store.hash_len("h3") == 0  # no fields: no hash
    assert store.hash_get_all("h4") == {'q"\\': "é;\n"}
    store.hash_put_many({}, 60)
    time.sleep(0.5)  # past the first TTL: the question is whether the refresh held
    assert store.hash_get_many([("h1", ["old"])]) == [["0"]]
    store.hash_put_many({"h5": {"a": "1"}}, 0.1)
    assert eventually(lambda: store.hash_get_all("h5") == {})


def test_bits_are_read_as_redis_counts_them_modulo_the_arrays_size(store: StateStore) -> None:
    store.bits_put("b", "meta 1", bytes([0b1000_0001, 0, 0b0000_0001]), 60)
    store.bits_put("empty", "an empty array", b"", 60)
    store.put("s", "a string", 60)
    store.hash_put("h", "f", "v", 60)
    offsets = [0, 1, 7, 23, 24, 31, 2**51 + 7]  # 24 = 0 (mod 24), 31 = 7, 2**51 + 7 = 15
    assert store.bits_get_many(["b", "empty", "missing", "s", "h"], offsets) == [
        ("meta 1", [True, False, True, True, True, True, False]),
        ("an empty array", [False] * 7), None, None, None]
    assert store.bits_get_many([], offsets) == []
    assert store.bits_get_many(["b"], []) == [("meta 1", [])]


def test_bits_put_replaces_the_whole_value_and_expires(store: StateStore) -> None:
    store.bits_put("b", "first", b"\xff" * 100, 60)
    store.bits_put("b", "second", b"\x00", 60)
    assert store.bits_get_many(["b"], [0, 8, 799]) == [("second", [False] * 3)]
    store.bits_put("b", "short", b"\x80", 0.1)
    assert eventually(lambda: store.bits_get_many(["b"], [0]) == [None])


def test_bits_refuse_a_meta_or_an_offset_they_cannot_hold(store: StateStore) -> None:
    with pytest.raises(ValueError, match="meta"):
        store.bits_put("b", "x" * 65, b"", 60)
    with pytest.raises(ValueError, match="meta"):
        store.bits_put("b", "é", b"", 60)
    with pytest.raises(ValueError, match="offsets"):
        store.bits_get_many(["b"], [2**52])
    with pytest.raises(ValueError, match="offsets"):
        store.bits_get_many(["b"], [-1])
    with pytest.raises(ValueError, match="TTL"):
        store.bits_put("b", "m", b"", 0)


def test_hash_get_many_reads_chosen_fields_of_many_hashes(store: StateStore) -> None:
    store.hash_replace("h1", {"a": "1", "b": "2"}, 60)
    store.hash_replace("h2", {"c": "3"}, 60)
    store.put("s", "a string, not a hash", 60)
    asked: list[tuple[str, list[str]]] = [
        ("h1", ["b", "x", "a"]), ("missing", ["a"]), ("h2", []), ("h2", ["c"])]
    assert store.hash_get_many(asked) == [["2", None, "1"], [None], [], ["3"]]
    assert store.hash_get_many([]) == []
    assert store.hash_get_many([("s", ["a"])]) == [[None]]  # no hash there: nothing
    many = {f"f{i}": str(i) for i in range(2_500)}  # more than one HMGET holds in Lua
    store.hash_put_many({"big": many}, 60)
    assert store.hash_get_many([("big", [*many, "absent"])]) == [[*many.values(), None]]


def test_a_reader_sees_the_old_or_the_new_hash_never_a_mix(store: StateStore) -> None:
    old = {f"f{i}": "old" for i in range(200)}
    new = {f"f{i}": "new" for i in range(100, 300)}
    store.hash_replace("h", old, 60)
    seen: list[set[str]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            values = store.hash_get_many([("h", [f"f{i}" for i in range(300)])])[0]
            seen.append({v or "-" for v in values[:100]} | {v or "-" for v in values[200:]})

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(20):
        store.hash_replace("h", new, 60)
        store.hash_replace("h", old, 60)
    done.set()
    reader.join(timeout=10)
    # f0-f99 exist only in the old hash, f200-f299 only in the new one: one read that
    # saw a mix would hold both "old" and "new" among them.
    assert seen and all(kinds in ({"old", "-"}, {"-", "new"}) for kinds in seen)


def test_a_ttl_must_be_positive(store: StateStore) -> None:
    with pytest.raises(ValueError):
        store.put("k", "v", 0)
    with pytest.raises(ValueError):
        store.add("k", "v", -1)


def test_add_lets_exactly_one_of_many_concurrent_callers_win(store: StateStore) -> None:
    wins: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def contend() -> None:
        start.wait(timeout=5)
        won = store.add("lease", threading.current_thread().name, 60)
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert wins.count(True) == 1


def test_concurrent_incr_loses_no_update(store: StateStore) -> None:
    def add_many() -> None:
        for _ in range(50):
            store.incr("count", 1, 60)

    threads = [threading.Thread(target=add_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert store.get("count") == "200"


def test_namespaces_do_not_see_each_other(redis_url: str) -> None:
    first = open_store(redis_url, namespace="fjr:p1:")
    second = open_store(redis_url, namespace="fjr:p2:")
    first.put("k", "one", 60)
    assert second.get("k") is None
    assert first.get("k") == "one"
    memory_a, memory_b = MemoryStore(namespace="a"), MemoryStore(namespace="b")
    memory_a.put("k", "v", 60)
    assert memory_b.get("k") is None


def test_redis_keys_carry_the_namespace_and_a_ttl(
    redis_url: str, redis_server: RedisServer
) -> None:
    store = open_store(redis_url, namespace="fjr:proj:")
    store.put("s", "v", 60)
    store.hash_put("h", "f", "v", 60)
    store.hash_replace("r", {"f": "v"}, 60)
    store.incr("n", 1, 60)
    with redis_server.client() as client:
        keys = sorted(client.keys("*"))
        assert keys == ["fjr:proj:h", "fjr:proj:n", "fjr:proj:r", "fjr:proj:s"]
        assert all(0 < client.pttl(key) <= 60_000 for key in keys)


def test_an_unreachable_redis_is_state_unavailable_without_the_password() -> None:
    with RedisServer() as server:
        port = server.port
    store = open_store(f"redis://:Pa55-w0rd-secret@127.0.0.1:{port}/0?socket_timeout=0.5",
                       namespace="fjr:x:")
    with pytest.raises(StateUnavailable) as raised:
        store.get("k")
    message = str(raised.value)
    assert "Pa55-w0rd-secret" not in message
    assert f"127.0.0.1:{port}" in message


def test_a_wrong_password_is_state_unavailable_without_the_password() -> None:
    with RedisServer(password="R1ght-secret-pw") as server:
        url = server.url.replace("redis://", "redis://:Wr0ng-secret-pw@")
        store = open_store(url, namespace="fjr:x:")
        with pytest.raises(StateUnavailable) as raised:
            store.put("k", "v", 60)
        assert "Wr0ng-secret-pw" not in str(raised.value)
        good = open_store(url.replace("Wr0ng", "R1ght"), namespace="fjr:x:")
        good.put("k", "v", 60)
        assert good.get("k") == "v"


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(StateUnavailable):
        open_store("memcached://127.0.0.1", namespace="x")


# -- the in-process store's bounds (issue 19) ----------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_expiry_follows_the_injected_clock_key_by_key() -> None:
    clock = _Clock()
    store = MemoryStore(clock=clock)
    store.put("short", "v", 10)
    store.hash_put("hash", "f", "v", 30)
    store.incr("counter", 1, 20)
    clock.now += 10
    assert store.get("short") is None
    assert store.hash_get_all("hash") == {"f": "v"} and store.get("counter") == "1"
    clock.now += 10
    assert store.get("counter") is None and store.hash_len("hash") == 1
    clock.now += 10
    assert store.hash_get_all("hash") == {}
    assert len(store) == 0


def test_memory_past_max_keys_the_least_recently_used_key_goes() -> None:
    store = MemoryStore(max_keys=3)
    store.put("a", "1", 60)
    store.put("b", "2", 60)
    store.put("c", "3", 3600)
    assert store.get("a") == "1"  # used: "b" is now the least recently used
    store.put("d", "4", 60)
    assert store.get_many(["a", "b", "c", "d"]) == ["1", None, "3", "4"]
    assert len(store) == 3


def test_memory_past_max_bytes_the_least_recently_used_keys_go() -> None:
    from failjob_reaper.state._memory import KEY_COST

    one = KEY_COST + len("k0") + 100  # what one key of 100 characters counts
    store = MemoryStore(max_keys=1000, max_bytes=5 * one)
    for i in range(5):
        store.put(f"k{i}", "x" * 100, 60)
    assert store.bytes_counted == 5 * one
    store.get("k0")
    store.put("k5", "y" * 150, 60)  # 50 more than one key's worth: two keys must go
    assert store.get_many([f"k{i}" for i in range(6)]) == [
        "x" * 100, None, None, "x" * 100, "x" * 100, "y" * 150]
    assert store.bytes_counted <= 5 * one


def test_memory_hash_writes_keep_the_byte_count_exact() -> None:
    from failjob_reaper.state._memory import _cost

    clock = _Clock()
    store = MemoryStore(clock=clock)
    store.hash_put("h", "a", "1", 60)
    store.hash_put("h", "b", "22", 60)
    store.hash_put("h", "a", "333", 60)
    store.hash_delete("h", "b")
    store.incr("n", 5, 60)
    store.incr("n", 1000, 60)
    assert store.bytes_counted == _cost("h", {"a": "333"}) + _cost("n", "1005")
    store.hash_replace("h", {}, 60)
    assert store.bytes_counted == _cost("n", "1005")


def test_memory_a_value_larger_than_the_whole_bound_is_not_kept_nor_is_the_old_one() -> None:
    store = MemoryStore(max_bytes=2000)
    store.hash_replace("view", {"a": ""}, 60)
    store.hash_replace("view", {f"k{i}": "" for i in range(100)}, 60)  # > 2000 bytes
    assert store.hash_get_all("view") == {}  # a reader never sees the replaced view
    store.put("s", "x" * 10, 60)
    store.put("s", "x" * 5000, 60)
    assert store.get("s") is None
    store.hash_put("grows", "f0", "v", 60)
    for i in range(1, 30):
        store.hash_put("grows", f"f{i}", "v" * 10, 60)
    assert store.hash_len("grows") == 0 or store.bytes_counted <= 2000
    assert store.bytes_counted <= 2000


class _CountedKey(str):
    """A key that counts how often it is hashed: each dict or set operation on a key
    hashes it once, so the count is the work a write does on the keys."""

    hashed = 0

    def __hash__(self) -> int:
        _CountedKey.hashed += 1
        return str.__hash__(self)


def _hashes_per_write_past_the_bound(keys: int, writes: int) -> float:
    clock = _Clock()
    store = MemoryStore(clock=clock, max_keys=keys)
    for i in range(keys):  # full, with expiry instants all different
        store.put(_CountedKey(f"ix:{i:08d}"), "v", 3600 + i % 977)
    _CountedKey.hashed = 0
    for i in range(writes):
        store.put(_CountedKey(f"new:{i:08d}"), "v", 60 + i % 13)
        if i % 3 == 0:
            store.hash_put(_CountedKey(f"hash:{i % 50}"), f"f{i}", "v", 60)
        clock.now += 0.01
    return _CountedKey.hashed / writes


def test_memory_a_write_past_the_bound_costs_the_same_at_any_number_of_keys() -> None:
    # A write that scanned the keys to choose one to evict hashed every key (the store
    # before issue 19: about 1,300 per write at 1,000 keys, 100,000 at its 100,000-key bound).
    small = _hashes_per_write_past_the_bound(1_000, 3_000)
    large = _hashes_per_write_past_the_bound(30_000, 3_000)
    assert small < 40
    assert large < 40
    assert large <= small * 1.5 + 2


def test_memory_bytes_counted_are_about_what_the_process_pays() -> None:
    import tracemalloc

    n = 5_000
    store = MemoryStore(max_keys=10 * n, max_bytes=2**40)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            store.put(f"ix:resource_id:{i:036d}", f'["group-{i % 20:02d}"]', 3600)
        paid = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.5 * paid <= store.bytes_counted <= 2 * paid, (paid / n, store.bytes_counted / n)


def test_memory_rewriting_one_key_keeps_the_expiry_heap_small() -> None:
    clock = _Clock()
    store = MemoryStore(clock=clock)
    for i in range(10_000):
        store.put("lease", str(i), 60)
        store.hash_put("view", "at", str(i), 60)
        clock.now += 0.001
    assert store.get("lease") == "9999"
    assert len(store._expiry) <= 2 * 2 + 64 + 2  # stale slots are swept, not hoarded


def test_memory_indexing_a_backlog_never_pushes_out_a_lease_or_the_journal() -> None:
    store = MemoryStore(max_keys=1000)
    store.add("lease:sweep", "token-1", 60)
    store.put("journal:abc", "sent", 3600)
    for i in range(5000):  # a sweep indexing 5,000 tasks into a store of 1,000 keys
        store.put(f"ix:resource_id:{i}", '["-"]', 3600)
        store.hash_put(f"sv:group-{i % 20}", f"job_id:{i}", "", 60)
    assert store.get("lease:sweep") == "token-1" and store.get("journal:abc") == "sent"
    assert store.get("ix:resource_id:4999") == '["-"]'  # the index keeps its latest keys
    assert store.get("ix:resource_id:0") is None
    assert len(store) == 1000


def test_memory_evicts_first_exactly_the_lookup_index_keys() -> None:
    from failjob_reaper.state import keys as state_keys
    from failjob_reaper.state._memory import CACHE_PREFIXES

    index_keys = (state_keys.index_bucket(1, 2), state_keys.INDEX_SCOPES,
                  state_keys.scope_view("-"), state_keys.GROUPS_VIEW)
    for key in index_keys:
        assert key.startswith(CACHE_PREFIXES), key
    cached = {name for name in state_keys.NAMES if name.startswith(("index", "scope", "group"))}
    assert {state_keys.declared(key) for key in index_keys} == cached
