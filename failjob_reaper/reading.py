"""Reading the scopes a plan needs: the listings the planner decides on.

One job (a sweep, one task, one resource) needs the scopes its target may live
in. :class:`ScopeReader` reads them - in parallel where the job allows, within
its deadline - and, with a warm lookup index, reads only the scopes the index
names and weighs the others by their recent views (``lookup.LookupIndex``).
Which records a DELETE must weigh is the planner's word
(``plan.keys_to_weigh``); this module only fetches. A scope that could not be
read is an incomplete listing, with the reason; the planner decides what that
means.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from failjob_reaper.plan import Everything, Plan, ScopeListing
from failjob_reaper.reporting import Job
from failjob_reaper.scopes import LookupIndex, Scope, read_scope, scopes_to_search, search_order
from failjob_reaper.sdrs import IncompleteListing, SdrsError, TaskCenterClient

Progress = Callable[[str, int, int], None]
"""Called with (phase, done, total); phases: "listing", "deleting"."""


@dataclass
class Execution:
    """What happened in one execution besides its outcomes (the sweep summary uses it)."""

    plan: Plan | None = None
    scopes: list[Scope] = field(default_factory=list)
    partial_reasons: list[str] = field(default_factory=list)
    listing_error: SdrsError | None = None
    """The first listing failure (single events report it as their outcome)."""
    left_over: int = 0
    deleted_before_stop: int = 0
    """DELETEs answered before the execution stopped early (store or sink lost)."""
    stopped: str | None = None
    """Why deleting stopped before the plan was done (besides the deadline)."""


class ScopeReader:
    """Reads listings for jobs, over one client, with the lookup index when there is one."""

    def __init__(
        self,
        client: TaskCenterClient,
        planner: Callable[[Job, Sequence[ScopeListing]], Plan],
        clock: Callable[[], datetime],
        *,
        list_concurrency: int = 1,
    ) -> None:
        self.client = client
        self.planner = planner
        """The one planner (``Reaper.plan``): would the plan on what is read so far
        DELETE? Then every other scope must be weighed too."""
        self.clock = clock
        self.list_concurrency = list_concurrency
        self.index: LookupIndex | None = None

    def gather(
        self,
        job: Job,
        *,
        client: TaskCenterClient | None = None,
        scopes: Sequence[Scope] | None = None,
        concurrency: int = 1,
        deadline_at: float | None = None,
        stop_at: Callable[[], bool] = lambda: False,
        progress: Progress | None = None,
    ) -> tuple[list[ScopeListing], Execution]:
        """Every listing the plan for ``job`` needs (SdrsError when the protection
        groups cannot be listed at all). ``scopes``: read exactly these (a sweep)."""
        client = client or self.client
        groups_incomplete: IncompleteListing | None = None
        # A single event weighs every scope its id may live in: the ones it reads, in
        # parallel (it waits for the slowest listing, not their sum), and with a warm
        # index the others by their recent views (_beyond_the_index).
        listing_concurrency = max(concurrency, self.list_concurrency)
        indexed = False
        if scopes is None and self.index is not None:
            scopes = self.index.scopes_for(job.target)  # where it was last listed, if known
            indexed = scopes is not None
        if scopes is None:
            try:
                scopes = scopes_to_search(client, job.hint_group, deadline_at, self.index)
            except IncompleteListing as exc:
                # Search the groups that are known; the plan deletes nothing (complete or
                # nothing), but what the policy keeps is still told as retained.
                groups_incomplete, scopes = exc, list(exc.scopes)
        listings, execution = self.read(job, client=client, scopes=scopes,
                                        concurrency=listing_concurrency, stop_at=stop_at,
                                        deadline_at=deadline_at, progress=progress)
        if indexed and execution.listing_error is None:
            listings, groups_incomplete = self._beyond_the_index(
                job, client, listings, execution, stop_at=stop_at,
                deadline_at=deadline_at, concurrency=listing_concurrency)
        if groups_incomplete is not None:
            listings.append(ScopeListing(None, (), complete=False, why_incomplete=(
                f"protection groups: {groups_incomplete.message}"),
                retryable=groups_incomplete.retryable))
            execution.listing_error = execution.listing_error or groups_incomplete
        return listings, execution

    def read(
        self,
        job: Job,
        *,
        client: TaskCenterClient | None = None,
        scopes: Sequence[Scope],
        concurrency: int = 1,
        stop_at: Callable[[], bool] = lambda: False,
        deadline_at: float | None = None,
        progress: Progress | None = None,
        execution: Execution | None = None,
    ) -> tuple[list[ScopeListing], Execution]:
        """List ``scopes``. A scope that could not be listed (error, deadline) is an
        incomplete listing, with the reason."""
        client = client or self.client
        execution = execution or Execution()
        execution.scopes = list(scopes)
        lock = threading.Lock()
        done = 0
        single = not isinstance(job.target, Everything)

        def list_one(scope: Scope) -> ScopeListing:
            nonlocal done
            if stop_at():
                listing = ScopeListing(scope.server_group_id, (), complete=False,
                                       why_incomplete="deadline reached while listing")
            elif single and execution.listing_error is not None \
                    and not isinstance(execution.listing_error, IncompleteListing):
                # One task's search that already failed: its outcome is that failure.
                listing = ScopeListing(scope.server_group_id, (), complete=False,
                                       why_incomplete="not listed after an earlier failure")
            else:
                try:
                    listing = read_scope(client, scope, self.clock, deadline_at)
                except IncompleteListing as exc:
                    with lock:
                        execution.listing_error = execution.listing_error or exc
                    listing = ScopeListing(scope.server_group_id, exc.records, complete=False,
                                           why_incomplete=exc.message,
                                           retryable=exc.retryable)
                except SdrsError as exc:
                    with lock:
                        execution.listing_error = execution.listing_error or exc
                    listing = ScopeListing(scope.server_group_id, (), complete=False,
                                           why_incomplete=f"listing failed: {exc.message}",
                                           retryable=exc.retryable)
            with lock:
                done += 1
                if progress is not None:
                    progress("listing", done, len(scopes))
            return listing

        if concurrency > 1 and len(scopes) > 1:
            with ThreadPoolExecutor(min(concurrency, len(scopes))) as pool:
                listings = list(pool.map(list_one, scopes))
        else:
            listings = [list_one(scope) for scope in scopes]
        for listing in listings:
            if not listing.complete:
                execution.partial_reasons.append(
                    f"{listing.where}: {listing.why_incomplete}"
                    if listing.why_incomplete and "deadline" not in listing.why_incomplete
                    else "deadline reached while listing")
        execution.partial_reasons[:] = list(dict.fromkeys(execution.partial_reasons))
        if self.index is not None:
            self.index.record(listings, whole=isinstance(job.target, Everything)
                              and job.hint_group is None
                              and all(listing.complete for listing in listings))
        return listings, execution

    def _beyond_the_index(
        self,
        job: Job,
        client: TaskCenterClient,
        listings: list[ScopeListing],
        execution: Execution,
        *,
        stop_at: Callable[[], bool],
        deadline_at: float | None,
        concurrency: int,
    ) -> tuple[list[ScopeListing], IncompleteListing | None]:
        """The index named where to look; read what it did not cover. The target not
        there: every other scope (the index was wrong). Found: any scope the index knows
        for the same DELETE id or resource that was not read yet. And when the plan on
        that view would DELETE, every other scope must be weighed too (the DELETE path is
        project-wide: complete or nothing) - each one either by its recent view (listed
        less than LISTING_MAX_AGE ago, without any record the planner says this DELETE
        must weigh) or by reading it now."""
        index = self.index
        assert index is not None
        more = index.scopes_to_weigh(job.target, listings)
        read = [Scope(listing.server_group_id) for listing in listings]
        if more:
            extra, _ = self.read(job, client=client, scopes=more, stop_at=stop_at,
                                 deadline_at=deadline_at, concurrency=concurrency,
                                 execution=execution)
            read, listings = [*read, *more], [*listings, *extra]
        incomplete: IncompleteListing | None = None
        if more is None or self.planner(job, listings).deletes:
            recent = index.recent_groups() if more is not None else None
            if recent is not None:
                everywhere = search_order(job.hint_group, recent[0])
            else:
                try:
                    everywhere = scopes_to_search(client, job.hint_group, deadline_at, index)
                except IncompleteListing as exc:  # the groups known; the plan deletes nothing
                    incomplete, everywhere = exc, list(exc.scopes)
            rest = [s for s in everywhere if s not in read]
            vouched: list[ScopeListing] = []
            while rest:
                # Every record read so far that the DELETE must weigh: a scope is vouched
                # for only if its view holds none of their keys; what is read may bring
                # new keys, so the views are asked again until nothing new is read.
                if more is not None and incomplete is None:
                    vouched = index.vouch(rest, index.keys_to_weigh(job.target, listings))
                skip = {v.server_group_id for v in vouched}
                to_read = [s for s in rest if s.server_group_id not in skip]
                if not to_read:
                    break
                extra, _ = self.read(job, client=client, scopes=to_read, stop_at=stop_at,
                                     deadline_at=deadline_at, concurrency=concurrency,
                                     execution=execution)
                read, listings = [*read, *to_read], [*listings, *extra]
                rest = [s for s in rest if s.server_group_id in skip]
                vouched = []
            listings = [*listings, *vouched]
        execution.scopes = read
        return listings, incomplete
