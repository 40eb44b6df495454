"""Checking and re-encoding an uploaded image with Pillow (synchronous; run it in a thread).

:func:`normalize_image` takes the uploaded bytes and returns a new image made from their
pixels only, or raises an :class:`~liaotian.errors.AttachmentError`:

* only PNG, JPEG, WEBP and GIF are tried (Pillow's other decoders never see the bytes);
  anything else is :class:`~liaotian.errors.UnsupportedMediaType`;
* the size in the header is checked *before* any pixel is decoded: more than
  ``max_pixels`` is :class:`~liaotian.errors.AttachmentTooLarge`, so a small file that
  claims 100,000 × 100,000 pixels, or compresses a huge blank one, costs nothing. Pillow's
  own bomb check is turned into an error too (:data:`DecompressionBombWarning` is raised,
  not warned, in this process);
* the image is decoded whole (a truncated or corrupt one is
  :class:`~liaotian.errors.InvalidImage`), turned upright by its EXIF orientation,
  downscaled so its longest side is at most ``max_side`` (a large JPEG is decoded at a
  reduced scale directly), and encoded again with no metadata: no EXIF (GPS, camera,
  time), XMP, comments or text chunks; only the ICC colour profile is kept.

PNG stays PNG, JPEG stays JPEG (quality 90), WEBP stays WEBP (quality 90); a GIF, animated
or not, becomes a PNG of its first frame (as does the first frame of an animated WEBP or
PNG), which every model provider accepts.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from liaotian.errors import AttachmentTooLarge, InvalidImage, UnsupportedMediaType

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
# What each accepted format is stored as: (Pillow format, media type, file extension).
OUTPUT = {
    "PNG": ("PNG", "image/png", ".png"),
    "GIF": ("PNG", "image/png", ".png"),
    "JPEG": ("JPEG", "image/jpeg", ".jpg"),
    "WEBP": ("WEBP", "image/webp", ".webp"),
}
MEDIA_TYPES = frozenset(media_type for _, media_type, _ in OUTPUT.values())
"""The media types a stored attachment can have (all safe to serve inline)."""
QUALITY = 90
# Modes each output format is written in as they are; any other is converted first.
_KEPT_MODES = {"PNG": ("L", "LA", "RGB", "RGBA"), "JPEG": ("L", "RGB"), "WEBP": ("RGB", "RGBA")}

# A bomb must never be half-decoded because a warning filter let it through.
warnings.simplefilter("error", Image.DecompressionBombWarning)


@dataclass(frozen=True, slots=True)
class NormalizedImage:
    """A re-encoded image: its bytes, media type, file extension and size in pixels."""

    data: bytes
    media_type: str
    extension: str
    width: int
    height: int


def normalize_image(data: bytes | bytearray, *, max_pixels: int, max_side: int) -> NormalizedImage:
    """Check ``data`` is a PNG/JPEG/WEBP/GIF of at most ``max_pixels`` pixels and encode it
    again without metadata, its longest side at most ``max_side``.

    Raises UnsupportedMediaType, AttachmentTooLarge or InvalidImage.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise UnsupportedMediaType("the file is not a PNG, JPEG, WEBP or GIF image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(None, max_pixels) from None
    except Exception:  # a hostile header may make a decoder raise anything
        raise InvalidImage("the image cannot be read: its header is damaged") from None
    with image:
        width, height = image.size
        if width < 1 or height < 1:
            raise InvalidImage("the image has no pixels")
        if width * height > max_pixels:
            raise _too_many_pixels((width, height), max_pixels)
        source = image.format or ""
        try:
            return _reencode(image, source, max_side)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_many_pixels((width, height), max_pixels) from None
        except Exception:  # truncated or corrupt data fails in the decoder, in any way
            raise InvalidImage("the image cannot be decoded: it is truncated or damaged") from None


def _reencode(image: Image.Image, source: str, max_side: int) -> NormalizedImage:
    pillow_format, media_type, extension = OUTPUT[source]
    if source == "JPEG" and max(image.size) > max_side:
        # Let the JPEG decoder scale down by 1/2, 1/4 or 1/8 as it decodes: a 48-megapixel
        # photo then never takes 144 MB. The size asked keeps the longest side >= max_side.
        scale = max_side / max(image.size)
        image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    image.load()  # the first frame, whole: truncated data raises here
    ImageOps.exif_transpose(image, in_place=True)
    icc_profile = image.info.get("icc_profile")
    has_alpha = image.has_transparency_data
    if image.mode not in _KEPT_MODES[pillow_format] or (
        has_alpha and image.mode not in ("LA", "RGBA")
    ):
        if has_alpha and pillow_format != "JPEG":
            image = image.convert("RGBA")
        else:
            image = image.convert("L" if image.mode == "1" else "RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    # Nothing of the source's metadata (EXIF, XMP, comments, text chunks) is written: the
    # encoders take what is passed here, and the defaults some take from ``info``.
    image.info = {}
    options: dict[str, object] = {"quality": QUALITY} if pillow_format != "PNG" else {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    out = io.BytesIO()
    image.save(out, pillow_format, **options)
    return NormalizedImage(out.getvalue(), media_type, extension, image.width, image.height)


def _too_many_pixels(size: tuple[int, int] | None, max_pixels: int) -> AttachmentTooLarge:
    claimed = f"the image is {size[0]:,} × {size[1]:,} pixels; " if size else ""
    return AttachmentTooLarge(
        f"{claimed}images of at most {max_pixels:,} pixels are accepted",
    )
