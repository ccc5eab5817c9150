"""The imports queue: messages are `{"v":1,"jobId":...}`, base64 as the Functions host expects."""

from __future__ import annotations

import json

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

__all__ = ["JobQueue", "decode_message"]


def encode_message(job_id: str) -> str:
    return json.dumps({"v": 1, "jobId": job_id}, separators=(",", ":"))


def decode_message(text: str) -> str | None:
    """The job id in a message, or None for a message that is not ours (it is then dropped)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("jobId"), str):
        return None
    job_id = data["jobId"]
    return job_id if 0 < len(job_id) <= 64 and job_id.replace("-", "").isalnum() else None


class JobQueue:
    def __init__(self, connection_string: str | None, queue_name: str, *, account: str | None = None,
                 credential: TokenCredential | None = None) -> None:
        if connection_string:
            self._queue = QueueClient.from_connection_string(connection_string, queue_name,
                                                             message_encode_policy=TextBase64EncodePolicy())
        else:  # identity-based, like the Functions host's AzureWebJobsStorage__accountName connection
            self._queue = QueueClient(f"https://{account}.queue.core.windows.net", queue_name, credential=credential,
                                      message_encode_policy=TextBase64EncodePolicy())
        self._created = False

    def send(self, job_id: str, *, delay_seconds: int = 0) -> None:
        if not self._created:
            try:
                self._queue.create_queue()
            except ResourceExistsError:
                pass
            self._created = True
        self._queue.send_message(encode_message(job_id), visibility_timeout=delay_seconds or None)
