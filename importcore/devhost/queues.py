"""Queue-triggered functions: poll Azure Storage queues with the host's batch, lease and poison rules."""
from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.functions.queue import QueueMessage  # the concrete class the Python worker builds
from azure.storage.queue import LinearRetry, QueueClient

from ..values.errors import TransportError
from .config import QueueOptions
from .functions import FunctionSpec, Invoker

log = logging.getLogger("importcore.devhost")

MIN_POLL = 0.1  # the host's minimum polling interval; empty polls double it up to maxPollingInterval


def encode(body: str | bytes, encoding: str) -> str:
    """Queue text for a body, in host.json's messageEncoding."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return base64.b64encode(raw).decode("ascii") if encoding == "base64" else raw.decode("utf-8")


def decode(content: str, encoding: str) -> bytes:
    """A message body from queue text; ValueError when it is not valid base64."""
    if encoding != "base64":
        return content.encode("utf-8")
    try:
        return base64.b64decode(content, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not valid base64: {exc}") from None


def _storage_failure(exc: Exception) -> str:
    """What went wrong, in a few words: the SDK's messages run to object reprs and request ids."""
    if isinstance(exc, HttpResponseError) and exc.status_code:
        code = getattr(exc, "error_code", None)  # the storage SDKs add it to azure-core's error at run time
        return f"{exc.status_code} {code or exc.reason or ''}".strip() + " (check the account name and key)"
    text = str(exc)
    for words, say in (("refused", "connection refused (is Azurite or the storage account running and reachable?)"),
                       ("Name or service not known", "the host name does not resolve"),
                       ("timed out", "timed out")):
        if words in text:
            return say
    return f"{exc.__class__.__name__}: {text.splitlines()[0][:200] if text else 'no detail'}"


class Queues:
    """QueueClients per (connection string, queue), each queue created once on first use."""

    def __init__(self, encoding: str) -> None:
        """encoding is host.json's messageEncoding, used for output bindings."""
        self._encoding = encoding
        self._clients: dict[tuple[str, str], QueueClient] = {}
        self._created: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def client(self, connection: str, queue: str) -> QueueClient:
        """A client that returns message text as stored (devhost decodes it itself)."""
        with self._lock:
            key = (connection, queue)
            if key not in self._clients:
                # Few quick retries: the polling loop is the real retry, and stop must stay prompt.
                # The SDK annotates both as int but draws the wait with random.uniform: half seconds work.
                retry = LinearRetry(backoff=0.5, random_jitter_range=0.5, retry_total=2)  # type: ignore[arg-type]
                self._clients[key] = QueueClient.from_connection_string(connection, queue, retry_policy=retry)
            return self._clients[key]

    def ensure(self, connection: str, queue: str) -> QueueClient:
        """The client, after creating the queue if it does not exist; TransportError when the storage
        account cannot be reached or refuses (named by its endpoint, never by its key)."""
        client = self.client(connection, queue)
        if (connection, queue) not in self._created:
            try:
                client.create_queue()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                endpoint = f"{client.scheme}://{client.primary_hostname}"
                raise TransportError(f"cannot create queue '{queue}' at {endpoint} (storage connection "
                                     f"AzureWebJobsStorage): {_storage_failure(exc)}") from None
            self._created.add((connection, queue))
        return client

    def send_raw(self, connection: str, queue: str, text: str) -> None:
        """Enqueue text that is already in the queue's encoding."""
        self.ensure(connection, queue).send_message(text)

    def send_output(self, binding: Mapping[str, Any], value: Any) -> None:
        """Deliver a queue output binding's value (one message, or one per list item)."""
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if hasattr(item, "get_body"):  # a QueueMessage
                item = item.get_body()
            elif not isinstance(item, (str, bytes)):
                item = json.dumps(item)
            self.send_raw(binding["connectionString"], binding["queueName"], encode(item, self._encoding))

    def close(self) -> None:
        """Close every client's connection pool."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


class QueueListener:
    """Polls one queue for one function and runs up to batchSize + newBatchThreshold messages at once."""

    def __init__(self, spec: FunctionSpec, options: QueueOptions, queues: Queues, invoker: Invoker,
                 *, lease: float) -> None:
        """lease is the visibility timeout taken on receive, renewed at half while the function runs."""
        self.spec, self.options, self._queues, self._invoker = spec, options, queues, invoker
        self.queue = str(spec.trigger["queueName"])
        self._lease = max(1, int(lease))
        self._client = queues.client(spec.connection or "", self.queue)
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._cv = threading.Condition()
        self._inflight = 0
        workers = options.batch_size + options.new_batch_threshold
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"devhost-{spec.name}")
        self._thread = threading.Thread(target=self._poll, name=f"devhost-poll-{spec.name}", daemon=True)

    def start(self) -> None:
        """Create the queue if missing and start polling."""
        self._queues.ensure(self.spec.connection or "", self.queue)
        self._thread.start()

    def stop_polling(self) -> None:
        """Take no new messages; in-flight ones finish."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no message is in flight; False if some still are after timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._inflight == 0, timeout=max(0.0, timeout))

    def close(self) -> None:
        """Stop renewing leases (unfinished messages reappear when theirs expire) and release threads."""
        self.stop_polling()
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _poll(self) -> None:
        delay, failing = MIN_POLL, False
        batch = self.options.batch_size
        while not self._stop.is_set():
            with self._cv:
                # Like the host: fetch the next batch once in-flight work drops to newBatchThreshold.
                self._cv.wait_for(lambda: self._inflight <= self.options.new_batch_threshold or self._stop.is_set())
            if self._stop.is_set():
                break
            try:
                messages = list(self._client.receive_messages(
                    max_messages=batch, messages_per_page=batch, visibility_timeout=self._lease))
                if failing:
                    log.info("Queue '%s' is reachable again", self.queue)
                failing = False
            except Exception as exc:  # noqa: BLE001 - storage outages must not kill the listener
                if not failing:
                    log.warning("Polling queue '%s' failed (will keep retrying): %s", self.queue, exc)
                failing, messages = True, []
            if not messages:
                self._stop.wait(delay)
                delay = min(delay * 2, self.options.max_polling_interval)
                continue
            delay = MIN_POLL
            with self._cv:
                self._inflight += len(messages)
            for message in messages:
                self._pool.submit(self._process, message)

    def _process(self, message: Any) -> None:
        try:
            self._handle(message)
        except Exception:  # noqa: BLE001 - a storage error on one message must not stop the others
            log.exception("Queue '%s': storage operation for message %s failed", self.queue, message.id)
        finally:
            with self._cv:
                self._inflight -= 1
                self._cv.notify_all()

    def _handle(self, message: Any) -> None:
        limit = self.options.max_dequeue_count
        if message.dequeue_count > limit:
            self._poison(message.id, message.pop_receipt, message.content)
            return
        try:
            body = decode(message.content, self.options.message_encoding)
        except ValueError as exc:
            # It can never succeed, so retrying would only delay the poison queue.
            log.warning("Message %s on queue '%s' is %s; moving it to the poison queue", message.id, self.queue, exc)
            self._poison(message.id, message.pop_receipt, message.content)
            return
        lease = _Lease(self._client, message.id, message.pop_receipt, self._lease, self._closed, self.queue)
        trigger = QueueMessage(
            id=message.id, body=body, pop_receipt=message.pop_receipt, dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on, insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on)
        try:
            self._invoker.invoke(self.spec, trigger, reason=f"New queue message detected on '{self.queue}'.")
        except Exception:  # noqa: BLE001 - the invoker logged it; the message's fate follows host rules
            receipt = lease.release()
            if message.dequeue_count >= limit:
                self._poison(message.id, receipt, message.content)
            else:
                # visibilityTimeout: how long a failed message stays hidden before its next try.
                visible_in = int(round(self.options.visibility_timeout))
                self._client.update_message(message.id, receipt, visibility_timeout=visible_in)
            return
        self._client.delete_message(message.id, lease.release())

    def _poison(self, message_id: str, receipt: str, content: str) -> None:
        poison = f"{self.queue}-poison"
        log.warning("Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
                    self.options.max_dequeue_count, poison)
        # The text is copied as stored, so the poison message keeps the queue's encoding.
        self._queues.send_raw(self.spec.connection or "", poison, content)
        self._client.delete_message(message_id, receipt)


class _Lease:
    """Keeps a received message invisible while its function runs, renewing at half the lease."""

    def __init__(self, client: QueueClient, message_id: str, receipt: str, seconds: int,
                 closed: threading.Event, queue: str) -> None:
        """Start renewing in a daemon thread until release()."""
        self._client, self._id, self._receipt, self._seconds = client, message_id, receipt, seconds
        self._closed, self._queue = closed, queue
        self._done = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._renew, name=f"devhost-lease-{message_id[:8]}", daemon=True).start()

    def release(self) -> str:
        """Stop renewing; the current pop receipt (each renewal replaces it)."""
        with self._lock:
            self._done.set()
            return self._receipt

    def _renew(self) -> None:
        while not self._done.wait(self._seconds / 2) and not self._closed.is_set():
            with self._lock:
                if self._done.is_set():
                    return
                try:
                    updated = self._client.update_message(self._id, self._receipt, visibility_timeout=self._seconds)
                    self._receipt = updated.pop_receipt or self._receipt  # the SDK types it optional
                except Exception as exc:  # noqa: BLE001 - the message may reappear; the function still finishes
                    log.warning("Could not renew the lease of message %s on queue '%s': %s", self._id, self._queue, exc)
