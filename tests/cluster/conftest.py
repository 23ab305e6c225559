"""An S3-compatible server on 127.0.0.1 (moto's server, in a thread) for the remote-storage tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow.fs as pafs
import pytest

BUCKET = "neuroray-test"


@dataclass(frozen=True)
class S3Server:
    bucket: str  # created empty for the session
    endpoint: str
    fs: pafs.S3FileSystem  # the test's own client, with explicit endpoint and fake credentials
    env: dict[str, str]  # what a process needs to reach it through pyarrow's default credential chain

    def keys(self, prefix: str) -> list[str]:
        return [f.path for f in self.fs.get_file_info(pafs.FileSelector(prefix, recursive=True)) if f.is_file]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    fs = pafs.S3FileSystem(endpoint_override=endpoint, access_key="testing", secret_key="testing",
                           region="us-east-1", allow_bucket_creation=True)
    fs.create_dir(BUCKET)
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    yield S3Server(BUCKET, endpoint, fs, env)
    server.stop()
