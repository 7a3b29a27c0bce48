"""S3-compatible object stores (AWS S3, MinIO, Ceph, R2...): `s3://bucket/prefix`.

Every object whose key starts with the prefix is an item (S3's own prefix rule: `s3://b/doc`
holds `doc/a.md` and `docs.md`); keys that end in `/` (the "folders" consoles make) are left
out. An object's ETag and size are its version: an object whose both are stored is not
downloaded. Credentials come from boto3's usual chain (the AWS_* environment variables,
AWS_PROFILE, the shared files ~/.aws/credentials and ~/.aws/config or the files that
AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE name, instance roles), or from
`credentials_file` (that format, mode 0600); never from the URL. `endpoint_url` points at
another S3-compatible server (MinIO: http://127.0.0.1:9000), addressed path-style.
"""

from __future__ import annotations

import configparser
import os
import posixpath
from datetime import timezone
from typing import ClassVar, Iterator

from searcher.readers.documents import Skipped
from searcher.sources.base import Item, SourceError, check_secret_file, without_userinfo

try:
    import boto3
    import botocore.config
    import botocore.exceptions as bex
except ImportError as e:  # open_source turns this into "pip install -e '.[s3]'"
    raise ImportError("boto3 is not installed", name="boto3") from e

# Error codes S3 answers with, and what a person can do about them.
_CODES = {
    "NoSuchBucket": "no such bucket",
    "AccessDenied": "access denied (check the credentials' permissions: s3:ListBucket and s3:GetObject)",
    "AllAccessDisabled": "access denied",
    "InvalidAccessKeyId": "the access key is not known to the server (check the credentials)",
    "SignatureDoesNotMatch": "the secret key does not match the access key (check the credentials)",
    "ExpiredToken": "the session token has expired",
    "InvalidBucketName": "not a valid bucket name",
    "NoSuchKey": "the object is gone (deleted since it was listed)",
    "PreconditionFailed": "the object changed while it was read; it is read at the next sync",
    "PermanentRedirect": "the bucket is in another region (give --region)",
}


class S3Source:
    """The objects under `s3://bucket/prefix` (see the module's docstring)."""

    scheme: ClassVar[str] = "s3"

    def __init__(self, url: str, endpoint_url: str | None = None, region: str | None = None,
                 profile: str | None = None, credentials_file: str | None = None):
        without_userinfo(url)
        if endpoint_url:
            without_userinfo(endpoint_url)
            if not endpoint_url.startswith(("http://", "https://")):
                raise SourceError(f"--endpoint-url must be an http:// or https:// URL, not {endpoint_url!r}")
        rest = url.split("://", 1)[1]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise SourceError(f"{url!r} names no bucket: s3://BUCKET[/PREFIX]")
        if credentials_file:
            check_secret_file(credentials_file)  # now, before anything is read or loaded
        self.bucket, self.prefix = bucket, prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.options = {k: v for k, v in (("endpoint_url", endpoint_url), ("region", region), ("profile", profile),
                                          ("credentials_file", credentials_file)) if v}
        self._client = None

    # -- the client ----------------------------------------------------------------------
    def _session(self):
        profile, path = self.options.get("profile"), self.options.get("credentials_file")
        try:
            if path:
                keys = _read_credentials(check_secret_file(path), profile or "default")
                return boto3.session.Session(region_name=self.options.get("region"), **keys)
            if not os.environ.get("AWS_ACCESS_KEY_ID"):
                shared = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
                if os.path.exists(os.path.expanduser(shared)):
                    check_secret_file(shared, "AWS shared credentials file")
            return boto3.session.Session(profile_name=profile, region_name=self.options.get("region"))
        except bex.ProfileNotFound:
            raise SourceError(f"no AWS profile {profile!r} in the AWS files") from None

    @property
    def client(self):
        if self._client is None:
            endpoint = self.options.get("endpoint_url")
            config = botocore.config.Config(
                connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"} if endpoint else None)
            try:
                self._client = self._session().client("s3", endpoint_url=endpoint, config=config)
            except ValueError as e:  # a malformed endpoint URL
                raise SourceError(f"cannot use the endpoint {endpoint}: {e}") from None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- the interface -------------------------------------------------------------------
    def items(self) -> Iterator[Item | Skipped]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = obj["Key"]
                    if key.endswith("/"):
                        continue  # a "folder"
                    folder = posixpath.dirname(key)
                    modified = obj.get("LastModified")
                    yield Item(key=f"s3://{self.bucket}/{key}", version=f"{obj['ETag'].strip(chr(34))}:{obj['Size']}",
                               name=posixpath.basename(key), size=int(obj["Size"]),
                               modified=(modified.astimezone(timezone.utc).isoformat(timespec="seconds")
                                         if modified else None),
                               folder=f"s3://{self.bucket}/{folder}" if folder else f"s3://{self.bucket}")
        except Exception as e:
            raise self._error(e, f"cannot list {self.url}") from None

    def read(self, item: Item) -> bytes:
        key = item.key[len(f"s3://{self.bucket}/"):]
        etag = item.version.rsplit(":", 1)[0]
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=f'"{etag}"')
            return answer["Body"].read()
        except Exception as e:
            raise self._error(e, "cannot read it") from None

    def _error(self, e: Exception, doing: str) -> SourceError:
        """A SourceError from boto3's error `e`, in words, without anything the server echoed."""
        endpoint = self.options.get("endpoint_url") or "AWS"
        if isinstance(e, SourceError):
            return e
        if isinstance(e, (bex.NoCredentialsError, bex.PartialCredentialsError)):
            return SourceError(f"{doing}: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                               f"AWS_PROFILE, or give --credentials-file, a file of mode 0600)")
        if isinstance(e, (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ConnectionClosedError)):
            return SourceError(f"{doing}: cannot reach {endpoint} (is the endpoint right, and the server up?)")
        if isinstance(e, bex.ReadTimeoutError):
            return SourceError(f"{doing}: {endpoint} did not answer in time")
        if isinstance(e, bex.ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            what = _CODES.get(code) or (f"the bucket {self.bucket} does not exist" if code in ("404", "NoSuchBucket")
                                        else f"the server answered {code or status}")
            if code == "NoSuchBucket":
                what = f"no such bucket {self.bucket!r}"
            return SourceError(f"{doing}: {what}")
        if isinstance(e, bex.BotoCoreError):
            return SourceError(f"{doing}: {type(e).__name__}")
        if isinstance(e, OSError):
            return SourceError(f"{doing}: {e.strerror or type(e).__name__}")
        return SourceError(f"{doing}: {type(e).__name__}")


def _read_credentials(path, section: str) -> dict:
    """aws_access_key_id, aws_secret_access_key (and aws_session_token) of `section` of an
    AWS credentials file; SourceError naming what is missing, never a value."""
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeError) as e:
        raise SourceError(f"the credentials file {path} is not in the AWS credentials format "
                          f"({type(e).__name__})") from None
    if not parser.has_section(section):
        raise SourceError(f"the credentials file {path} has no [{section}] section")
    keys = {name: parser.get(section, name) for name in ("aws_access_key_id", "aws_secret_access_key",
                                                          "aws_session_token") if parser.has_option(section, name)}
    missing = [n for n in ("aws_access_key_id", "aws_secret_access_key") if not keys.get(n)]
    if missing:
        raise SourceError(f"the credentials file {path} lacks {' and '.join(missing)} in [{section}]")
    return keys
