"""A TIFF that only grows: the crash-safe page appender under the OME-TIFF writers.

`PageFile` appends one uncompressed grayscale page at a time (one raw frame, or one
plane of a refocused volume) and, on `PageFile.finish`, puts the OME-XML header into
page 0's ImageDescription.

Crash safety
------------
A page (description, pixels, IFD) is written after the end of the file first and
only then linked from the previous page, with one small write, unbuffered. So the
file is a valid TIFF at every moment: a process killed at any instant (SIGKILL)
leaves every page that was linked, and a write that fails half-way (disk full) is cut
off again and the chain left as it was, before the error is raised. (Power loss is
another matter: pages are handed to the operating system, not synced to the disk.)
"""

from __future__ import annotations

import contextlib
import struct
from typing import TYPE_CHECKING

import numpy as np
import tifffile

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["PageFile"]

# TIFF field types and the pixel types a page can hold
_SHORT, _LONG, _ASCII, _LONG8 = 3, 4, 2, 16
_SAMPLE_FORMAT = {"u": 1, "i": 2, "f": 3}
_CLASSIC_LIMIT = 2**32 - 1


class PageFile:
    """A TIFF that only grows, one uncompressed grayscale page at a time.

    Valid at every moment (see "Crash safety" in the module docstring): each page is
    written past the end of the file, then linked from the previous page's IFD.

    Parameters
    ----------
    path : Path
        The file; created (or truncated).
    bigtiff : bool
        BigTIFF (64-bit offsets) rather than classic TIFF (files up to 4 GiB).
    """

    def __init__(self, path: Path, *, bigtiff: bool) -> None:
        self.path = path
        self.bigtiff = bigtiff
        if bigtiff:
            header = b"II+\x00" + struct.pack("<HHQ", 8, 0, 0)
            self._offset_format, self._link = "<Q", 8
        else:
            header = b"II*\x00" + struct.pack("<I", 0)
            self._offset_format, self._link = "<I", 4
        # unbuffered: every write reaches the operating system before we go on
        self._fh = open(path, "wb", buffering=0)  # closed in close()
        try:
            self._write_at(0, header)
        except OSError:
            self._fh.close()
            raise
        self._end = len(header)
        self.data_offsets: list[int] = []

    @property
    def pages(self) -> int:
        """Pages written (and linked) so far."""
        return len(self.data_offsets)

    def append(self, array: np.ndarray, description: str) -> None:
        """Write one 2-D page and link it; on an OSError the file is left as before.

        Parameters
        ----------
        array : numpy.ndarray
            A 2-D array of unsigned/signed integers or floats.
        description : str
            The page's ImageDescription (ASCII; JSON with ``ensure_ascii``).
        """
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        height, width = array.shape
        texts = (
            description.encode("ascii", "backslashreplace") + b"\x00",
            b"deepz-live\x00",
        )
        start = self._end
        text_offsets = []
        position = start
        for text in texts:
            text_offsets.append(position)
            position += _even(len(text))
        data_offset = position
        ifd_offset = data_offset + _even(array.nbytes)
        ifd = self._ifd(array, texts, text_offsets, data_offset, height, width)
        end = ifd_offset + len(ifd)
        if not self.bigtiff and end > _CLASSIC_LIMIT:
            raise OSError(
                f"{self.path.name} would grow past 4 GiB, the limit of classic TIFF; "
                "write BigTIFF (bigtiff=True)."
            )
        try:
            self._write_at(start, b"".join(_padded(t) for t in texts))
            self._write_at(data_offset, array.data.cast("B"))
            if array.nbytes % 2:
                self._write_at(data_offset + array.nbytes, b"\x00")
            self._write_at(ifd_offset, ifd)
            # the page is complete: link it (the only write that changes the chain)
            self._write_at(self._link, struct.pack(self._offset_format, ifd_offset))
        except OSError:
            self._undo()
            raise
        self._link = end - struct.calcsize(self._offset_format)
        self._end = end
        self.data_offsets.append(data_offset)

    def read(self, index: int, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
        """Read page ``index`` back from the file (through a handle of its own)."""
        dtype = np.dtype(dtype)
        offset = self.data_offsets[index]
        nbytes = shape[0] * shape[1] * dtype.itemsize
        with open(self.path, "rb") as reader:
            reader.seek(offset)
            data = reader.read(nbytes)
        if len(data) != nbytes:
            raise OSError(f"page {index} of {self.path} is incomplete")
        little = np.frombuffer(data, dtype.newbyteorder("<")).reshape(shape)
        return little.astype(dtype)

    def close(self) -> None:
        """Close the file; `read` still works afterwards."""
        self._fh.close()

    def finish(self, header: Callable[[], bytes] | None) -> None:
        """Close the file, then make ``header()`` page 0's ImageDescription.

        Parameters
        ----------
        header : callable or None
            Returns the OME-XML (ASCII bytes) that describes the whole file; called
            once the file is closed. None (nothing was appended) removes the file
            instead: an empty TIFF is not readable.
        """
        self.close()
        if header is None:
            self.path.unlink(missing_ok=True)
            return
        tifffile.tiffcomment(self.path, header(), pageindex=0)

    def _write_at(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        self._fh.seek(offset)
        while view.nbytes:
            written = self._fh.write(view)
            if not written:
                raise OSError(f"could not write to {self.path}")
            view = view[written:]

    def _undo(self) -> None:
        """Cut off a half-written page and make sure the chain still ends before it."""
        with contextlib.suppress(OSError):
            self._fh.truncate(self._end)
        with contextlib.suppress(OSError):
            self._write_at(self._link, struct.pack(self._offset_format, 0))

    def _ifd(
        self,
        array: np.ndarray,
        texts: tuple[bytes, bytes],
        text_offsets: list[int],
        data_offset: int,
        height: int,
        width: int,
    ) -> bytes:
        offset_type = _LONG8 if self.bigtiff else _LONG
        kind = array.dtype.kind
        if kind not in _SAMPLE_FORMAT:
            raise ValueError(f"pages of dtype {array.dtype} cannot be written")
        description, software = texts
        tags = [
            (254, _LONG, 1, 0),  # NewSubfileType
            (256, _LONG, 1, width),
            (257, _LONG, 1, height),
            (258, _SHORT, 1, array.dtype.itemsize * 8),  # BitsPerSample
            (259, _SHORT, 1, 1),  # Compression: none
            (262, _SHORT, 1, 1),  # Photometric: min-is-black
            (270, _ASCII, len(description), text_offsets[0]),
            (273, offset_type, 1, data_offset),  # StripOffsets
            (277, _SHORT, 1, 1),  # SamplesPerPixel
            (278, _LONG, 1, height),  # RowsPerStrip: one strip
            (279, offset_type, 1, array.nbytes),  # StripByteCounts
            (284, _SHORT, 1, 1),  # PlanarConfiguration: contiguous
            (305, _ASCII, len(software), text_offsets[1]),
            (339, _SHORT, 1, _SAMPLE_FORMAT[kind]),
        ]
        if self.bigtiff:
            entry, count, inline = "<HHQQ", "<Q", 8
        else:
            entry, count, inline = "<HHII", "<H", 4
        parts = [struct.pack(count, len(tags))]
        for code, kind_, n, value in tags:
            if kind_ == _ASCII and n <= inline:  # short text lives in the entry
                text = texts[0] if code == 270 else texts[1]
                value = int.from_bytes(text.ljust(inline, b"\x00"), "little")
            parts.append(struct.pack(entry, code, kind_, n, value))
        parts.append(struct.pack(self._offset_format, 0))  # no next page yet
        return b"".join(parts)


def _even(n: int) -> int:
    return n + (n % 2)


def _padded(data: bytes) -> bytes:
    return data + b"\x00" * (len(data) % 2)
