"""Avatar processing: what is accepted, what is refused, and what survives re-encoding."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import pytest
from PIL import Image

from opencodehub.avatars import service as avatars
from opencodehub.core.errors import ValidationFailed


def image_bytes(fmt: str, size: tuple[int, int] = (300, 200), **save: object) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((20, 20, 220), (0, 0, size[0] // 2, size[1]))
    output = io.BytesIO()
    image.save(output, format=fmt, **save)
    return output.getvalue()


def jpeg_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 29.0)
    gps[3] = "E"
    gps[4] = (2.0, 17.0, 40.0)
    return image_bytes("JPEG", exif=exif.tobytes())


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width`x`height` (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    avatars.clear_caches()
    yield
    avatars.clear_caches()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_accepted_formats_become_a_square_png_master(fmt: str) -> None:
    master = avatars.process_upload(io.BytesIO(image_bytes(fmt)))
    with Image.open(io.BytesIO(master)) as image:
        assert image.format == "PNG"
        assert image.size == (avatars.MASTER_SIZE, avatars.MASTER_SIZE)
        assert image.mode == "RGBA"


def test_exif_and_gps_are_gone() -> None:
    upload = jpeg_with_gps()
    with Image.open(io.BytesIO(upload)) as original:
        assert original.getexif().get_ifd(0x8825), "the test image must carry GPS data"
    master = avatars.process_upload(io.BytesIO(upload))
    with Image.open(io.BytesIO(master)) as image:
        assert not image.getexif()
        assert "exif" not in image.info and "icc_profile" not in image.info
    assert b"SpyCam" not in master and b"Exif" not in master


def test_animated_gif_keeps_only_its_first_frame() -> None:
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    output = io.BytesIO()
    frames[0].save(output, format="GIF", save_all=True, append_images=frames[1:], loop=0)
    master = avatars.process_upload(io.BytesIO(output.getvalue()))
    with Image.open(io.BytesIO(master)) as image:
        assert getattr(image, "n_frames", 1) == 1
        red, green, _, _ = image.getpixel((230, 230))
        assert red > 200 and green < 50


@pytest.mark.parametrize(
    "payload",
    [
        b"just some text\n",
        b"<!doctype html><html><script>alert(1)</script></html>",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,  # a PNG signature with nothing behind it
        b"GIF89a/*\x0a\x00\x00\x00\x00*/=1;alert(1);//",  # the classic GIF/JS polyglot
        image_bytes("BMP"),  # a real image, but not a format we accept
        image_bytes("TIFF"),
        image_bytes("PNG")[:120],  # truncated
    ],
    ids=["text", "html", "svg", "pdf", "png-magic", "gif-js", "bmp", "tiff", "truncated"],
)
def test_non_images_and_other_formats_are_refused(payload: bytes) -> None:
    with pytest.raises(ValidationFailed) as caught:
        avatars.process_upload(io.BytesIO(payload))
    assert caught.value.errors[0].field == "avatar"


@pytest.mark.parametrize(
    "trailer", [b"PK\x03\x04polyglot-zip-payload" + b"\x00" * 64, b"<script>alert(1)</script>"]
)
@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_polyglot_payloads_do_not_survive(fmt: str, trailer: bytes) -> None:
    master = avatars.process_upload(io.BytesIO(image_bytes(fmt) + trailer))
    assert trailer not in master
    assert b"PK\x03\x04" not in master and b"<script" not in master
    with Image.open(io.BytesIO(master)) as image:
        image.load()
        assert image.format == "PNG"


@pytest.mark.parametrize("size", [(50_000, 50_000), (4097, 10), (10, 4097), (4096, 4097)])
def test_decompression_bombs_are_refused_from_the_header(size: tuple[int, int]) -> None:
    bomb = png_declaring(*size)
    assert len(bomb) < 200
    with pytest.raises(ValidationFailed) as caught:
        avatars.process_upload(io.BytesIO(bomb))
    assert "larger than 4096" in caught.value.errors[0].message


def test_oversize_upload_is_refused_without_reading_it_all() -> None:
    reads: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            reads.append(1)
            yield b"\x00" * 65536

    with pytest.raises(avatars.AvatarTooLarge):
        avatars.process_upload(endless())
    assert len(reads) * 65536 <= avatars.MAX_UPLOAD_BYTES + 65536


def test_empty_upload_is_missing() -> None:
    with pytest.raises(ValidationFailed) as caught:
        avatars.process_upload(io.BytesIO(b""))
    assert caught.value.errors[0].code == "missing_field"


def test_identicon_is_deterministic_symmetric_and_valid() -> None:
    first = avatars.identicon("42", 120)
    assert first == avatars.identicon("42", 120)
    assert first != avatars.identicon("43", 120)
    with Image.open(io.BytesIO(first)) as image:
        assert image.format == "PNG" and image.size == (120, 120)
        rgb = image.convert("RGB")
        for y in range(0, 120, 7):
            for x in range(60):
                assert rgb.getpixel((x, y)) == rgb.getpixel((119 - x, y))
        assert len(rgb.getcolors() or []) == 2  # background and one colour


@pytest.mark.parametrize(
    ("requested", "snapped"), [(None, 460), (1, 16), (40, 40), (41, 48), (460, 460), (9999, 460)]
)
def test_sizes_snap_to_the_standard_set(requested: int | None, snapped: int) -> None:
    assert avatars.snap_size(requested) == snapped


def test_gravatar_url_hashes_the_normalised_address() -> None:
    url = avatars.gravatar_url("https://seccdn.libravatar.org/avatar/", " Alice@Example.COM ", 80)
    digest = "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"
    assert url == f"https://seccdn.libravatar.org/avatar/{digest}?s=80&d=404"
