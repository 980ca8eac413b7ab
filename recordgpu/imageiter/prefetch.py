"""Run a batch producer ahead of the consumer in a background thread, with a bounded queue.

Memory is bounded by ``depth`` finished items plus the one being produced. The thread holds no reference
to the iterator that owns it, so dropping the iterator (or breaking out of a loop) lets a finaliser stop
it; ``close()`` joins it. An exception in the producer reaches the consumer's next ``get()``.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

_END = object()


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Prefetcher(Generic[T]):
    """Calls ``produce()`` repeatedly in a thread until it returns None (end of stream) or fails."""

    def __init__(self, produce: Callable[[], T | None], depth: int, name: str = "recordgpu-prefetch") -> None:
        if depth < 1:
            raise ValueError("prefetch depth must be >= 1")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(produce,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, produce: Callable[[], T | None]) -> None:
        try:
            while not self._stop.is_set():
                item = produce()
                if item is None:
                    self._put(_END)
                    return
                if not self._put(item):
                    return
        except BaseException as e:  # handed to the consumer
            self._put(_Failure(e))

    def get(self) -> T | None:
        """The next item, or None at the end of the stream. Re-raises a producer exception."""
        if self._done:
            return None
        while True:
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self._done = True
                    return None
        if item is _END:
            self._done = True
            return None
        if isinstance(item, _Failure):
            self._done = True
            raise item.exc
        return item

    def close(self) -> None:
        """Stop the producer and wait for its thread (it finishes the item it is making first)."""
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._done = True

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
