"""Files the library writes and reads back: one place, checked, safe loading only.

Every checkpoint, shard result and :class:`~gibbsebm.Samples` file goes through
:func:`save_tensors` / :func:`load_tensors`, every run manifest through :func:`save_json` /
:func:`load_json`.

Binary files. A file is ``MAGIC`` (8 bytes), the length of a JSON header (4 bytes, big endian),
the header (``{"format_version": 1, "kind": ..., "body_bytes": n, "sha256": ...}``) and a
``torch.save`` body holding plain data only (tensors, numbers, strings, lists, dicts). On read:
the file is opened without following a symbolic link and must be a regular file; the magic,
the format version, the kind and the SHA-256 of the body are checked *before* the body is
deserialized; the body is read with ``torch.load(weights_only=True)``, which refuses anything
but plain data. A failed check raises :class:`~gibbsebm.errors.CorruptFileError` and nothing
from the file is used (in particular no pickled code runs).

JSON files. The document is an object with a ``"_gibbsebm"`` member ``{"format_version",
"kind", "sha256"}``, the SHA-256 of the canonical rendering of the other members (sorted keys,
no spaces), so the file stays readable and editable by eye but an edit or a torn write is
detected.

Writes go to a fresh temporary file in the same folder (created exclusively, never through a
link), are flushed and fsynced, renamed into place (:func:`os.replace`: a crash leaves the old
file or the new one, never half of one) and the folder is fsynced. A destination that is a
symbolic link is refused rather than replaced or followed.

The checksum detects accidents (flipped bits, truncation, a file of another kind or version);
it is not a signature: someone who can write the folder can write a valid file. What protects
against a crafted file is that loading never runs code.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import secrets
import stat
from typing import Any

import torch

from ..errors import CorruptFileError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "CorruptFileError",
    "atomic_write_bytes",
    "save_tensors",
    "load_tensors",
    "save_json",
    "load_json",
    "read_regular_file",
    "symlinks_in",
]

#: First bytes of every binary file gibbsebm writes.
MAGIC = b"GIBBSEBM"
#: Version of the file layout written here (the header's ``format_version``).
FORMAT_VERSION = 1
_MAX_HEADER = 1 << 16
_JSON_KEY = "_gibbsebm"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


# ------------------------------------------------------------------------------------ writing
def _refuse_link(path: str) -> None:
    if os.path.islink(path):
        raise CorruptFileError(
            f"{path} is a symbolic link; gibbsebm does not write through links in its run "
            "folders (remove the link or choose another path)",
            path,
        )


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, rename, fsync the folder.

    Raises
    ------
    CorruptFileError
        If ``path`` is a symbolic link.
    """
    path = os.fspath(path)
    _refuse_link(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(
        folder, f".{os.path.basename(path)}.tmp.{os.getpid()}.{secrets.token_hex(4)}"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - some platforms cannot open folders
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)


def save_tensors(obj: Any, path: str | os.PathLike, *, kind: str = "data") -> None:
    """Save plain data (tensors, numbers, strings, lists, dicts) to ``path`` atomically.

    Parameters
    ----------
    obj : object
        Plain data; tensors are stored as they are (move them to the CPU first if the file
        should load anywhere).
    path : path
        Destination (not a symbolic link).
    kind : str
        What the file holds (``"checkpoint"``, ``"samples"``, ``"shard"``, ...), checked by
        :func:`load_tensors`.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    body = buf.getvalue()
    header = json.dumps(
        {
            "format_version": FORMAT_VERSION,
            "kind": str(kind),
            "body": "torch",
            "body_bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        },
        sort_keys=True,
    ).encode("utf-8")
    atomic_write_bytes(MAGIC + len(header).to_bytes(4, "big") + header + body, path)


# ------------------------------------------------------------------------------------ reading
def read_regular_file(path: str | os.PathLike, *, what: str = "gibbsebm file") -> bytes:
    """The bytes of ``path``, refusing symbolic links and anything but a regular file.

    The last component is opened with ``O_NOFOLLOW`` (and without blocking, so a FIFO cannot
    hang the reader), then checked with ``fstat``.

    Raises
    ------
    CorruptFileError
        For a link, a folder, a device or a FIFO.
    FileNotFoundError
        If there is no such file.
    """
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    except OSError as err:
        if err.errno == errno.ELOOP or os.path.islink(p):
            raise CorruptFileError(
                f"{p} is a symbolic link; gibbsebm does not follow links to its {what}s", p
            ) from None
        if err.errno == errno.ENOENT:
            raise FileNotFoundError(errno.ENOENT, f"no {what} at {p}", p) from None
        raise CorruptFileError(f"cannot open {p} as a {what}: {err.strerror}", p) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptFileError(f"{p} is not a regular file, so not a {what}", p)
        if os.path.islink(p):  # pragma: no cover - platforms without O_NOFOLLOW
            raise CorruptFileError(f"{p} is a symbolic link; not followed", p)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_tensors(
    path: str | os.PathLike, *, what: str = "gibbsebm file", kind: str | None = None
) -> Any:
    """Load a file written by :func:`save_tensors` onto the CPU, after checking it; no code runs.

    Parameters
    ----------
    path : path
        The file (a symbolic link is refused).
    what : str
        How to call the file in messages.
    kind : str, optional
        The kind the file must have (as given to :func:`save_tensors`).

    Raises
    ------
    CorruptFileError
        (a :class:`ValueError`) If the file is not such a file: no gibbsebm header, another
        format version or kind, a checksum mismatch (flipped or missing bytes), or content
        other than plain data.
    """
    p = os.fspath(path)
    data = read_regular_file(p, what=what)
    if not data.startswith(MAGIC):
        raise CorruptFileError(
            f"{p} is not a {what}: it lacks the gibbsebm header (a file from another program, "
            "from gibbsebm before checked files, or damaged); it was not deserialized",
            p,
        )
    pos = len(MAGIC)
    if len(data) < pos + 4:
        raise CorruptFileError(f"{p} is a truncated {what} (no header)", p)
    n = int.from_bytes(data[pos : pos + 4], "big")
    if n > _MAX_HEADER or len(data) < pos + 4 + n:
        raise CorruptFileError(f"{p} is a damaged or truncated {what} (bad header length)", p)
    try:
        header = json.loads(data[pos + 4 : pos + 4 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptFileError(f"{p} is a damaged {what} (unreadable header)", p) from None
    if not isinstance(header, dict):
        raise CorruptFileError(f"{p} is a damaged {what} (unreadable header)", p)
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise CorruptFileError(
            f"{p} has file format version {version!r}; this gibbsebm reads version "
            f"{FORMAT_VERSION}",
            p,
        )
    if kind is not None and header.get("kind") != kind:
        raise CorruptFileError(
            f"{p} holds a {header.get('kind')!r} file, not a {what} ({kind!r})", p
        )
    body = data[pos + 4 + n :]
    if header.get("body_bytes") != len(body):
        raise CorruptFileError(
            f"{p} is a truncated or extended {what}: body of {len(body)} bytes, header says "
            f"{header.get('body_bytes')}",
            p,
        )
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise CorruptFileError(
            f"{p} fails its SHA-256 checksum: the {what} was damaged after it was written; "
            "nothing from it was used",
            p,
        )
    try:
        return torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure of the safe loader means "not ours"
        raise CorruptFileError(
            f"{p} is not a {what}: its content is not plain data ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); it was refused without running "
            "anything",
            p,
        ) from None


# ------------------------------------------------------------------------------------ JSON
def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def save_json(data: dict, path: str | os.PathLike, *, kind: str) -> None:
    """Write the JSON object ``data`` with a ``"_gibbsebm"`` checksum member, atomically.

    ``data`` must be JSON-able as it is (render tensors first, e.g. with
    :func:`gibbsebm._json.to_jsonable`) and must not have a ``"_gibbsebm"`` member.
    """
    if _JSON_KEY in data:
        raise ValueError(f"{_JSON_KEY!r} is reserved")
    doc = dict(data)
    doc[_JSON_KEY] = {
        "format_version": FORMAT_VERSION,
        "kind": str(kind),
        "sha256": hashlib.sha256(_canonical(data)).hexdigest(),
    }
    text = json.dumps(doc, indent=2) + "\n"
    atomic_write_bytes(text.encode("utf-8"), path)


def load_json(path: str | os.PathLike, *, kind: str, what: str | None = None) -> dict:
    """Read a file written by :func:`save_json` (``data`` without the checksum member).

    Raises
    ------
    CorruptFileError
        If the file is a link, not JSON, of another kind or version, or fails its checksum.
    """
    p = os.fspath(path)
    what = what or f"gibbsebm {kind} file"
    raw = read_regular_file(p, what=what)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"{p} is not a {what}: not JSON ({err})", p) from None
    if not isinstance(doc, dict) or not isinstance(doc.get(_JSON_KEY), dict):
        raise CorruptFileError(f"{p} is not a {what} (no {_JSON_KEY!r} member)", p)
    meta = doc.pop(_JSON_KEY)
    if meta.get("format_version") != FORMAT_VERSION:
        raise CorruptFileError(
            f"{p} has file format version {meta.get('format_version')!r}; this gibbsebm reads "
            f"version {FORMAT_VERSION}",
            p,
        )
    if meta.get("kind") != kind:
        raise CorruptFileError(f"{p} is a {meta.get('kind')!r} file, not a {what}", p)
    if hashlib.sha256(_canonical(doc)).hexdigest() != meta.get("sha256"):
        raise CorruptFileError(
            f"{p} fails its SHA-256 checksum (edited or damaged after it was written)", p
        )
    return doc


def symlinks_in(folder: str | os.PathLike) -> list[str]:
    """The folder itself if it is a symbolic link, else its entries that are links (sorted)."""
    f = os.fspath(folder)
    if os.path.islink(f):
        return [f]
    if not os.path.isdir(f):
        return []
    return sorted(os.path.join(f, e.name) for e in os.scandir(f) if e.is_symlink())
