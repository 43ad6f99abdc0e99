"""deepz-live's own file format: where its metadata goes, and the one reader of it.

The writers of `deepz_live.acquisition` store the metadata; the acquisition readers
(`read_run_metadata`, `read_frame_metadata`, `read_volume_metadata`) and the z-stack
reader of `deepz_live.inference` (`read_stacks`) read it back. Those two layers never
import each other, so the format lives here, below both: this module imports the
standard library and tifffile, never a layer.

An OME-TIFF, once closed
------------------------
Page 0 holds OME-XML whose ``StructuredAnnotations`` carry, besides the standard
fields, the project's metadata under these namespaces:

* ``CommentAnnotation``\\ s of exact JSON, read back here: the run metadata of raw
  frames (`RUN_JSON_NAMESPACE`, an object) and their per-frame metadata
  (`FRAMES_JSON_NAMESPACE`, a list of objects); for refocused volumes the run
  metadata (`VOLUMES_RUN_JSON_NAMESPACE`) and per-volume metadata
  (`VOLUMES_JSON_NAMESPACE`).
* ``MapAnnotation``\\ s of text for viewers such as OMERO, not read back: the run
  settings (`RUN_NAMESPACE`, `VOLUMES_NAMESPACE`) and what the z and time values
  mean (`AXES_NAMESPACE`).

An OME-TIFF never closed (a killed process)
-------------------------------------------
Every page's ImageDescription is JSON, written with the page:

* raw frames: ``{FRAME_KEY: k, **frame_metadata}``; page 0 also holds the run
  metadata as it was at the first frame (``RUN_KEY``), see `frame_page_description`;
* volumes: ``{VOLUME_KEY: t, PLANE_KEY: k}``, the first plane of every volume also
  holding the volume's metadata, see `volume_page_description`.

Metadata that is there but not the writers' (JSON of the wrong shape) raises
`ValueError`; each layer turns that into its own error.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import tifffile

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "AXES_NAMESPACE",
    "FRAMES_JSON_NAMESPACE",
    "FRAME_KEY",
    "PLANE_KEY",
    "RUN_JSON_NAMESPACE",
    "RUN_KEY",
    "RUN_NAMESPACE",
    "VOLUMES_JSON_NAMESPACE",
    "VOLUMES_NAMESPACE",
    "VOLUMES_RUN_JSON_NAMESPACE",
    "VOLUME_KEY",
    "annotated_list",
    "annotated_object",
    "comment_annotation",
    "frame_page_description",
    "page_frame_metadata",
    "page_run_metadata",
    "page_volume_metadata",
    "volume_page_description",
]

# --- OME-XML annotation namespaces -------------------------------------------------

RUN_NAMESPACE = "deepz-live/run"
RUN_JSON_NAMESPACE = "deepz-live/run.json"
FRAMES_JSON_NAMESPACE = "deepz-live/frames.json"
VOLUMES_NAMESPACE = "deepz-live/volumes"
VOLUMES_RUN_JSON_NAMESPACE = "deepz-live/volumes-run.json"
VOLUMES_JSON_NAMESPACE = "deepz-live/volumes.json"
AXES_NAMESPACE = "deepz-live/axes"

# --- keys of the per-page JSON ImageDescriptions -----------------------------------

FRAME_KEY = "deepz_frame"
"""A raw frame's index, in its page's JSON."""
RUN_KEY = "deepz_run"
"""The run metadata, in page 0's JSON of raw frames (until the file is closed)."""
VOLUME_KEY = "deepz_volume"
"""A volume's index, in the JSON of each of its pages."""
PLANE_KEY = "plane"
"""A plane's index within its volume, in the JSON of each of its pages."""


# --- OME-XML -----------------------------------------------------------------------


def comment_annotation(ome_xml: str | None, namespace: str) -> str | None:
    """The text of the ``CommentAnnotation`` in ``namespace``; None if there is none.

    Parameters
    ----------
    ome_xml : str or None
        An OME-XML document (``TiffFile.ome_metadata``) of any OME schema version;
        None for a file without.
    namespace : str
        One of the namespaces of this module.

    Raises
    ------
    xml.etree.ElementTree.ParseError
        ``ome_xml`` is not XML.
    """
    if not ome_xml:
        return None
    for element in ET.fromstring(ome_xml).iter():
        if _local(element.tag) == "CommentAnnotation":
            if element.get("Namespace") == namespace:
                value = next((v for v in element if _local(v.tag) == "Value"), None)
                return None if value is None else value.text
    return None


def annotated_object(ome_xml: str | None, namespace: str) -> dict[str, Any] | None:
    """The JSON object in the ``CommentAnnotation`` in ``namespace`` (run metadata).

    None when the document has no such annotation.

    Raises
    ------
    ValueError
        The annotation is not a JSON object.
    """
    text = comment_annotation(ome_xml, namespace)
    if text is None:
        return None
    return _json_object(text, f"the JSON of annotation {namespace!r}")


def annotated_list(ome_xml: str | None, namespace: str) -> list[dict[str, Any]] | None:
    """The JSON list of objects in the ``CommentAnnotation`` in ``namespace``.

    The per-frame or per-volume metadata; None when the document has no such
    annotation.

    Raises
    ------
    ValueError
        The annotation is not a JSON list of objects.
    """
    text = comment_annotation(ome_xml, namespace)
    if text is None:
        return None
    return _json_objects(text, f"the JSON of annotation {namespace!r}")


def _local(tag: str) -> str:
    """A tag's name without its XML namespace (OME schema versions differ)."""
    return tag.rsplit("}", 1)[-1]


# --- per-page JSON -----------------------------------------------------------------


def frame_page_description(
    index: int,
    frame_metadata: dict[str, Any],
    run_metadata: dict[str, Any] | None = None,
) -> str:
    """The JSON ImageDescription of raw frame ``index``'s page.

    ``run_metadata`` (JSON-ready) goes into page 0's, so that a file that is never
    closed still says what microscope and settings it came from.
    """
    head: dict[str, Any] = {FRAME_KEY: index}
    if run_metadata is not None:
        head[RUN_KEY] = run_metadata
    return json.dumps({**head, **frame_metadata})


def volume_page_description(
    index: int, plane: int, volume_metadata: dict[str, Any] | None = None
) -> str:
    """The JSON ImageDescription of plane ``plane`` of volume ``index``.

    ``volume_metadata`` (JSON-ready) goes into the volume's first plane only.
    """
    return json.dumps({VOLUME_KEY: index, PLANE_KEY: plane, **(volume_metadata or {})})


def page_run_metadata(tif: tifffile.TiffFile) -> dict[str, Any]:
    """The run metadata in page 0's JSON (raw frames never closed); {} if none.

    Raises
    ------
    ValueError
        Page 0's run metadata is not a JSON object.
    """
    if not len(tif.pages):
        return {}
    try:
        meta = json.loads(_description(tif, 0) or "{}")
    except ValueError:  # not JSON: another program's TIFF
        return {}
    run = meta.get(RUN_KEY, {}) if isinstance(meta, dict) else {}
    if not isinstance(run, dict):
        raise ValueError("the run metadata of page 0 is not a JSON object")
    return run


def page_frame_metadata(tif: tifffile.TiffFile) -> list[dict[str, Any]]:
    """The per-frame metadata in the pages' JSON (raw frames), one dict per page.

    Raises
    ------
    ValueError
        A page's description is not a JSON object.
    """
    found = []
    for meta in _page_descriptions(tif):
        meta.pop(FRAME_KEY, None)
        meta.pop(RUN_KEY, None)
        found.append(meta)
    return found


def page_volume_metadata(tif: tifffile.TiffFile) -> list[dict[str, Any]]:
    """The per-volume metadata in the pages' JSON (volumes), one dict per volume.

    Raises
    ------
    ValueError
        A page's description is not a JSON object.
    """
    found = []
    for meta in _page_descriptions(tif):
        if meta.pop(PLANE_KEY, None) == 0:
            meta.pop(VOLUME_KEY, None)
            found.append(meta)
    return found


def _page_descriptions(tif: tifffile.TiffFile) -> Iterator[dict[str, Any]]:
    """The JSON ImageDescription of every page, as the writers appended them."""
    for index in range(len(tif.pages)):
        yield _json_object(
            _description(tif, index) or "{}", f"the description of page {index}"
        )


def _description(tif: tifffile.TiffFile, index: int) -> str:
    page = tif.pages[index]
    page = page.aspage() if isinstance(page, tifffile.TiffFrame) else page
    return str(page.description or "")


# --- JSON --------------------------------------------------------------------------


def _json_object(text: str, what: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    return value


def _json_objects(text: str, what: str) -> list[dict[str, Any]]:
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"{what} is not a JSON list of objects")
    return value
