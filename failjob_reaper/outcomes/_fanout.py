"""Several destinations at once: ``K_SINK`` and EventGrid "as well as" each other
(docs/huawei-cloud.md).

An event counts as delivered when every destination took it or refused it for good
(``delivery.Refused``: reported upward, so that the publisher logs and counts it).
A destination that took (or refused) an event is not sent it again when the event
is retried for another destination's sake (remembered in this process, bounded);
across instances a retry may repeat it, which consumers recognise by the stable id.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from cloudevents.http import CloudEvent

from failjob_reaper.delivery import Refused
from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.outcomes._eventgrid import PartialDelivery


class _Emitter(Protocol):
    def emit(self, event: CloudEvent) -> None: ...


class FanoutEmitter:
    """Hands every event to each emitter; ``emit_many`` batches where an emitter can."""

    def __init__(self, emitters: Sequence[_Emitter], *, remember: int = 10_000) -> None:
        if not emitters:
            raise ValueError("at least one emitter")
        self.emitters = list(emitters)
        self._taken: OrderedDict[tuple[int, str], None] = OrderedDict()
        self._remember = remember

    def emit(self, event: CloudEvent) -> None:
        self.emit_many([event])

    def emit_many(self, events: Sequence[CloudEvent]) -> None:
        undelivered: set[str] = set()
        refused: dict[str, str] = {}
        last: OutcomeDeliveryError | None = None
        for index, emitter in enumerate(self.emitters):
            todo = [event for event in events if (index, str(event["id"])) not in self._taken]
            if not todo:
                continue
            failed: set[str] = set()
            try:
                emit_many = getattr(emitter, "emit_many", None)
                if callable(emit_many):
                    emit_many(todo)
                else:
                    for position, event in enumerate(todo):
                        try:
                            emitter.emit(event)
                        except Refused as exc:  # that one event: the next ones go on
                            refused.update(exc.refused)
                        except OutcomeDeliveryError:
                            # The rest are not tried now: the destination is down.
                            failed.update(str(e["id"]) for e in todo[position:])
                            raise
            except Refused as exc:
                refused.update(exc.refused)
            except PartialDelivery as exc:
                failed = set(exc.undelivered)
                refused.update(exc.refused)
                last = exc
            except OutcomeDeliveryError as exc:
                failed = failed or {str(event["id"]) for event in todo}
                last = exc
            for event in todo:
                if str(event["id"]) not in failed:
                    self._remember_taken(index, str(event["id"]))
            undelivered |= failed
        if undelivered:
            raise PartialDelivery(str(last) if last else "not delivered", undelivered, refused)
        if refused:
            raise Refused("+".join(type(e).__name__ for e in self.emitters), refused)

    def _remember_taken(self, index: int, event_id: str) -> None:
        self._taken[(index, event_id)] = None
        while len(self._taken) > self._remember:
            self._taken.popitem(last=False)

    def close(self) -> None:
        for emitter in self.emitters:
            close = getattr(emitter, "close", None)
            if callable(close):
                close()
