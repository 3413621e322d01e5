"""Avatars: uploaded images made safe, generated identicons, and optional Gravatar look-ups.

An upload is untrusted bytes. It is read with a size cap, identified by decoding (only the PNG,
JPEG, GIF and WebP decoders are ever tried, whatever its name or declared type says), its
dimensions are checked from the header before any pixel is decoded (decompression bombs), and
what is stored is a fresh PNG built from the pixel data alone: no EXIF, GPS, ICC profile, text
chunk, trailing payload or second frame survives. The stored master is a 460x460 square (centre
crop) at `avatars/u/{account id}`; smaller standard sizes are resized from it on request and kept
in a small in-process cache.

Accounts without an upload get an identicon: a symmetric 5x5 grid coloured from a hash of the
account id, so it never changes when the account is renamed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote

from sqlalchemy.orm import Session

from opencodehub.accounts.models import User
from opencodehub.core.errors import FieldError, ValidationFailed
from opencodehub.storage.base import ObjectNotFound, StorageAdapter

if TYPE_CHECKING:
    # Pillow and httpx are imported where an image is made or fetched, not at start-up:
    # a server that has not drawn an avatar yet does not carry them.
    from PIL import Image

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_DIMENSION = 4096
MAX_PIXELS = MAX_DIMENSION * MAX_DIMENSION
MASTER_SIZE = 460
# `?s=` is snapped up to one of these, so the resize cache stays small and bounded.
STANDARD_SIZES = (16, 20, 32, 40, 48, 64, 80, 96, 120, 128, 160, 200, 240, 400, MASTER_SIZE)
DEFAULT_SIZE = MASTER_SIZE
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
CONTENT_TYPE = "image/png"
KEY_PREFIX = "avatars/u"

GRAVATAR_TIMEOUT_SECONDS = 3.0
GRAVATAR_CACHE_SECONDS = 3600
_READ_CHUNK = 64 * 1024
_SPOOL_IN_MEMORY = 1024 * 1024
_RESOURCE = "Avatar"
_FIELD = "avatar"


class AvatarTooLarge(ValidationFailed):
    """The upload is over `MAX_UPLOAD_BYTES`; it was not decoded."""


@dataclass(frozen=True)
class AvatarImage:
    """One avatar ready to send: PNG bytes and a strong validator for them."""

    body: bytes
    etag: str
    content_type: str = CONTENT_TYPE
    source: str = "upload"  # "upload", "gravatar" or "identicon"


def avatar_key(account: User) -> str:
    return f"{KEY_PREFIX}/{account.id}"


def snap_size(requested: int | None) -> int:
    """The smallest standard size at least `requested` (the master size past the largest)."""
    if requested is None:
        return DEFAULT_SIZE
    if requested < 1:
        raise ValueError("an avatar size is at least 1 pixel")
    for size in STANDARD_SIZES:
        if size >= requested:
            return size
    return MASTER_SIZE


# Decoding and re-encoding -----------------------------------------------------------------------


def _invalid(message: str) -> ValidationFailed:
    return ValidationFailed.invalid(_RESOURCE, _FIELD, message)


def spool_limited(source: BinaryIO | Iterable[bytes], limit: int = MAX_UPLOAD_BYTES) -> BinaryIO:
    """Copy `source` into a seekable temporary file, refusing it once it passes `limit` bytes.

    Only `limit` bytes (plus one chunk) are ever read, so an endless body costs nothing more.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115 - returned
    total = 0
    chunks: Iterable[bytes]
    if hasattr(source, "read"):
        reader: BinaryIO = source  # type: ignore[assignment]
        chunks = iter(lambda: reader.read(_READ_CHUNK), b"")
    else:
        chunks = source  # type: ignore[assignment]
    try:
        for chunk in chunks:
            total += len(chunk)
            if total > limit:
                raise AvatarTooLarge(
                    [
                        _field_error(
                            f"the image is larger than {limit // (1024 * 1024)} MB; "
                            "upload a smaller one"
                        )
                    ]
                )
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    if total == 0:
        spool.close()
        raise ValidationFailed.missing(_RESOURCE, _FIELD)
    spool.seek(0)
    return spool  # type: ignore[return-value]


def _field_error(message: str) -> FieldError:
    return FieldError(_RESOURCE, _FIELD, "invalid", message)


def decode_image(stream: BinaryIO) -> Image.Image:
    """The first frame of a PNG, JPEG, GIF or WebP image as RGBA pixels, or `ValidationFailed`.

    The format comes from decoding the bytes, never from a name or a declared type, and only
    these four decoders are tried (no EPS, PDF, SVG or anything that calls out to other tools).
    Dimensions are checked from the header before the pixel data is decoded.
    """
    from PIL import Image, ImageOps

    try:
        image = Image.open(stream, formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        raise _invalid(_too_big_message()) from None
    except Exception:  # hostile input can trip any error inside a decoder
        raise _invalid("the file is not a PNG, JPEG, GIF or WebP image") from None
    try:
        width, height = image.size
        if width < 1 or height < 1:
            raise _invalid("the image has no pixels")
        if width > MAX_DIMENSION or height > MAX_DIMENSION or width * height > MAX_PIXELS:
            raise _invalid(_too_big_message())
        if image.format == "JPEG":
            # Let libjpeg decode at a reduced scale: far less memory for a large photo.
            image.draft("RGB", (MASTER_SIZE * 2, MASTER_SIZE * 2))
        try:
            image.seek(0)  # GIF and WebP: the first frame only
            image.load()
            # Turn the picture upright before the EXIF orientation tag is thrown away.
            upright = ImageOps.exif_transpose(image)
            rgba = upright.convert("RGBA")
        except Image.DecompressionBombError:
            raise _invalid(_too_big_message()) from None
        except Exception:  # hostile input can trip any error inside a decoder
            raise _invalid("the image is damaged or truncated") from None
    finally:
        image.close()
    return rgba


def _too_big_message() -> str:
    return f"the image is larger than {MAX_DIMENSION}x{MAX_DIMENSION} pixels"


def square(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square and resize to `size`x`size`."""
    from PIL import Image, ImageOps

    return ImageOps.fit(image, (size, size), method=Image.Resampling.LANCZOS)


def encode_png(image: Image.Image) -> bytes:
    """PNG from the pixel data alone: a new image, so no `info` (EXIF, ICC, text) comes along."""
    from PIL import Image

    clean = Image.frombytes(image.mode, image.size, image.tobytes())
    output = io.BytesIO()
    clean.save(output, format="PNG", optimize=False)
    return output.getvalue()


def process_upload(source: BinaryIO | Iterable[bytes], limit: int = MAX_UPLOAD_BYTES) -> bytes:
    """An upload turned into the stored master: a metadata-free 460x460 PNG."""
    with spool_limited(source, limit) as spool:
        image = decode_image(spool)
    return encode_png(square(image, MASTER_SIZE))


# Storing -----------------------------------------------------------------------------------------


def set_avatar(
    session: Session, storage: StorageAdapter, account: User, source: BinaryIO | Iterable[bytes]
) -> str:
    """Validate and store an uploaded avatar for a user or organization; returns its key.

    The caller has authorized the change. Nothing is stored when the upload is refused; the
    object write is atomic, so readers see the old avatar or the new one.
    """
    master = process_upload(source)
    key = avatar_key(account)
    storage.put(key, io.BytesIO(master), size=len(master), content_type=CONTENT_TYPE)
    account.avatar_key = key
    session.flush()
    return key


def remove_avatar(session: Session, storage: StorageAdapter, account: User) -> bool:
    """Forget an uploaded avatar (the identicon or Gravatar shows again). False if none."""
    key = account.avatar_key
    if key is None:
        return False
    account.avatar_key = None
    session.flush()
    with contextlib.suppress(ObjectNotFound):
        storage.delete(key)
    return True


# Serving -----------------------------------------------------------------------------------------


class _LRU:
    """A small thread-safe LRU of rendered avatars, with optional expiry per entry."""

    def __init__(self, capacity: int):
        self._capacity = capacity
        self._items: OrderedDict[tuple[object, ...], tuple[float, AvatarImage | None]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> tuple[bool, AvatarImage | None]:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return False, None
            expires, value = entry
            if expires and expires < time.monotonic():
                del self._items[key]
                return False, None
            self._items.move_to_end(key)
            return True, value

    def put(self, key: tuple[object, ...], value: AvatarImage | None, ttl: float = 0) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + ttl if ttl else 0.0, value)
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_resized = _LRU(512)
_identicons = _LRU(1024)
_gravatars = _LRU(512)


def clear_caches() -> None:
    for cache in (_resized, _identicons, _gravatars):
        cache.clear()


def _etag(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


def _image(body: bytes, source: str) -> AvatarImage:
    return AvatarImage(body=body, etag=_etag(body), source=source)


def _resize_png(master: bytes, size: int) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(master), formats=("PNG",)) as image:
        image.load()
        return encode_png(square(image.convert("RGBA"), size))


def stored_avatar(storage: StorageAdapter, key: str, size: int) -> AvatarImage | None:
    """The uploaded avatar at `size`, or None when the object has gone missing."""
    try:
        info = storage.stat(key)
    except ObjectNotFound:
        return None
    cache_key = (key, info.etag, size)
    hit, cached = _resized.get(cache_key)
    if hit and cached is not None:
        return cached
    try:
        with storage.get(key) as stream:
            master = stream.read()
    except ObjectNotFound:
        return None
    body = master if size == MASTER_SIZE else _resize_png(master, size)
    image = _image(body, "upload")
    # The master is the biggest entry; small sizes are what pages ask for again and again.
    if size != MASTER_SIZE:
        _resized.put(cache_key, image)
    return image


def identicon(seed: str, size: int = DEFAULT_SIZE) -> bytes:
    """A deterministic identicon PNG: a horizontally symmetric 5x5 grid on a light background.

    The hash of `seed` picks the colour (hue from 12 bits, fixed saturation and lightness, so
    every colour reads on white) and which of the 15 independent cells are filled.
    """
    from PIL import Image, ImageDraw

    digest = hashlib.sha256(f"opencodehub-identicon:{seed}".encode()).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    colour = _hsl_to_rgb(hue / 360, 0.55, 0.55)
    bits = int.from_bytes(digest[2:4], "big")
    cells = 5
    margin = size // 12 if size >= 24 else 0
    cell = (size - 2 * margin) / cells
    canvas = Image.new("RGB", (size, size), (240, 240, 240))
    draw = ImageDraw.Draw(canvas)
    for row in range(cells):
        for column in range(3):  # the left half and the middle column; the rest is a mirror
            if (bits >> (row * 3 + column)) & 1:
                box = (
                    margin + round(column * cell),
                    margin + round(row * cell),
                    margin + round((column + 1) * cell) - 1,
                    margin + round((row + 1) * cell) - 1,
                )
                draw.rectangle(box, fill=colour)
    # Mirror the left half onto the right, so the symmetry is exact to the pixel.
    half = size // 2
    mirrored = canvas.crop((0, 0, half, size)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    canvas.paste(mirrored, (size - half, 0))
    return encode_png(canvas)


def _hsl_to_rgb(hue: float, saturation: float, lightness: float) -> tuple[int, int, int]:
    import colorsys

    red, green, blue = colorsys.hls_to_rgb(hue, lightness, saturation)
    return round(red * 255), round(green * 255), round(blue * 255)


def identicon_avatar(account: User, size: int) -> AvatarImage:
    cache_key = (account.id, size)
    hit, cached = _identicons.get(cache_key)
    if hit and cached is not None:
        return cached
    image = _image(identicon(str(account.id), size), "identicon")
    _identicons.put(cache_key, image)
    return image


def gravatar_email(account: User) -> str | None:
    """The primary verified address of a user (organizations have no verified address)."""
    for email in account.emails:
        if email.is_primary and email.is_verified:
            return email.email.strip().lower()
    return None


def gravatar_url(base_url: str, email: str, size: int) -> str:
    """Gravatar's and Libravatar's URL scheme: `{base}/{sha256(lowercased email)}?s=…&d=404`."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return f"{base_url.rstrip('/')}/{quote(digest)}?s={size}&d=404"


def fetch_gravatar(base_url: str, email: str, size: int) -> AvatarImage | None:
    """The account's Gravatar, fetched by the server (pages only load images from our origin)
    and put through the same checks as an upload; None when there is none or it fails.

    Answers, misses included, are remembered for an hour so pages do not wait on the network.
    """
    import httpx

    cache_key = (base_url, email, size)
    hit, cached = _gravatars.get(cache_key)
    if hit:
        return cached
    result: AvatarImage | None = None
    try:
        with (
            httpx.Client(timeout=GRAVATAR_TIMEOUT_SECONDS, follow_redirects=False) as client,
            client.stream("GET", gravatar_url(base_url, email, size)) as response,
        ):
            if response.status_code == 200:
                body = process_remote(response.iter_bytes(), size)
                result = _image(body, "gravatar")
    except (httpx.HTTPError, ValidationFailed):
        result = None
    _gravatars.put(cache_key, result, ttl=GRAVATAR_CACHE_SECONDS)
    return result


def process_remote(chunks: Iterable[bytes], size: int) -> bytes:
    with spool_limited(chunks, MAX_UPLOAD_BYTES) as spool:
        image = decode_image(spool)
    return encode_png(square(image, size))


def render_avatar(
    storage: StorageAdapter, account: User, size: int, gravatar_base_url: str = ""
) -> AvatarImage:
    """What `/avatars/u/{id}` shows: the upload, else the Gravatar (when enabled), else the
    identicon."""
    if account.avatar_key:
        stored = stored_avatar(storage, account.avatar_key, size)
        if stored is not None:
            return stored
    if gravatar_base_url and not account.is_organization:
        email = gravatar_email(account)
        if email:
            remote = fetch_gravatar(gravatar_base_url, email, size)
            if remote is not None:
                return remote
    return identicon_avatar(account, size)
