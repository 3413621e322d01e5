"""The Git LFS wire format (batch API, verify, locking API) as Pydantic models.

Inputs ignore fields they do not know, as the spec asks of servers. Per-object values (oid,
size) are checked by the service, not here, so one bad object is an error in its own entry of
the answer instead of a failed request.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# git-lfs sends at most 100 objects per batch; leave room for other clients.
MAX_BATCH_OBJECTS = 1000
# An oid longer than this is reported as invalid without being echoed back in full.
MAX_ECHOED_OID = 128


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Ref(_Input):
    name: str = Field(max_length=1024)


class BatchObjectIn(_Input):
    oid: str = Field(max_length=10_000)
    size: int


class BatchRequest(_Input):
    operation: Literal["upload", "download"]
    transfers: list[str] = Field(default_factory=lambda: ["basic"], max_length=100)
    ref: Ref | None = None
    objects: list[BatchObjectIn] = Field(max_length=MAX_BATCH_OBJECTS)
    hash_algo: str = Field(default="sha256", max_length=100)


class Action(BaseModel):
    href: str
    header: dict[str, str] | None = None
    expires_in: int | None = None
    expires_at: str | None = None


class ObjectError(BaseModel):
    code: int
    message: str


class BatchObjectOut(BaseModel):
    oid: str
    size: int
    authenticated: bool | None = None
    actions: dict[str, Action] | None = None
    error: ObjectError | None = None


class BatchResponse(BaseModel):
    transfer: Literal["basic"] = "basic"
    objects: list[BatchObjectOut]
    hash_algo: Literal["sha256"] = "sha256"


class VerifyRequest(_Input):
    oid: str = Field(max_length=10_000)
    size: int


class LockOwner(BaseModel):
    name: str


class LockOut(BaseModel):
    id: str
    path: str
    locked_at: str
    owner: LockOwner


class CreateLockRequest(_Input):
    path: str = Field(max_length=10_000)
    ref: Ref | None = None


class LockResponse(BaseModel):
    lock: LockOut
    message: str | None = None


class LockListResponse(BaseModel):
    locks: list[LockOut]
    next_cursor: str | None = None


class VerifyLocksRequest(_Input):
    cursor: str | None = Field(default=None, max_length=100)
    limit: int | None = None
    ref: Ref | None = None


class VerifyLocksResponse(BaseModel):
    ours: list[LockOut]
    theirs: list[LockOut]
    next_cursor: str | None = None


class UnlockRequest(_Input):
    force: bool = False
    ref: Ref | None = None


class VerifyResponse(BaseModel):
    message: str


class ErrorResponse(BaseModel):
    message: str
    documentation_url: str | None = None
    request_id: str | None = None
