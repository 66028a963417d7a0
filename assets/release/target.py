"""Where a release is written: a local folder or ``s3://bucket/prefix``, one interface.

S3 goes through :func:`orchestration.lake.s3_client`, the lake's own client (endpoint, region
and credentials from the standard AWS_* variables, never from config), so a release target
works wherever the lake does.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestration import lake as lake_io


class ReleaseTarget:
    """Files under ``uri`` addressed by relative paths (``merged_anno/x.json``)."""

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self._s3 = lake_io.is_s3(self.uri)
        if self._s3:
            self._bucket, self._prefix = lake_io.split_s3(self.uri)
            self._client = lake_io.s3_client()

    def _key(self, rel: str) -> str:
        return f"{self._prefix}/{rel}" if self._prefix else rel

    def read(self, rel: str) -> bytes | None:
        """The file's bytes, None when it does not exist."""
        if self._s3:
            try:
                return self._client.get_object(Bucket=self._bucket, Key=self._key(rel))["Body"].read()
            except self._client.exceptions.NoSuchKey:
                return None
        path = Path(self.uri) / rel
        return path.read_bytes() if path.exists() else None

    def write(self, rel: str, data: bytes) -> None:
        if self._s3:
            self._client.put_object(Bucket=self._bucket, Key=self._key(rel), Body=data)
            return
        path = Path(self.uri) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: a crash never leaves half a file under the real name

    def delete(self, rel: str) -> None:
        if self._s3:
            self._client.delete_object(Bucket=self._bucket, Key=self._key(rel))
            return
        (Path(self.uri) / rel).unlink(missing_ok=True)
