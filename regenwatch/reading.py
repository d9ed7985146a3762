"""Reading page, output and verdict files outside Beam: a bad file is a clear error, never a traceback.

``regenwatch review``, ``sample`` and ``train --feedback`` read a run's
inputs, outputs and verdict files directly. Whatever such a file holds
(a corrupt gzip or Avro block, a truncated WARC, a line of invalid UTF-8,
JSON nested past the parser's limit, a foreign Avro schema), reading it
raises :class:`InputFileError`, a ``ValueError`` whose message names the file
and the line or record, and the commands print it and exit 2. Memory is
bounded as in the pipeline: JSON Lines through pipelines/bounded.py
(lines capped, gzip inflated in chunks, UTF-16/32 decoded), Avro blocks
capped.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


class InputFileError(ValueError):
    """A file a command reads that cannot be read; the message names the file and where."""


def checked(path: str, items: Iterable[T], unit: str = "record") -> Iterator[T]:
    """``items`` (read from ``path``), with any failure to read the next one as an InputFileError.

    ``unit`` names what is counted ("line", "record"): the error says which
    one could not be read, counting from 1.
    """
    count = 0
    try:
        iterator = iter(items)
    except Exception as exc:  # pylint: disable=broad-except
        # Opening the reader already read the file's header: whatever it raised, the file is bad.
        raise InputFileError(f"{path}: cannot be read: {type(exc).__name__}: {exc}") from exc
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except InputFileError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            # Reading input files: any exception a reader raises on bad bytes
            # (zlib.error, EOFError, fastavro's and warcio's own) is the file's fault.
            raise InputFileError(f"{path}: {unit} {count + 1} cannot be read: {type(exc).__name__}: "
                                 f"{str(exc)[:500]}") from exc
        count += 1
        yield item


def open_bytes(path: str):
    """The file as raw bytes (no decompression by extension), or InputFileError."""
    from apache_beam.io.filesystems import FileSystems

    try:
        return FileSystems.open(path, compression_type="uncompressed")
    except Exception as exc:  # pylint: disable=broad-except
        # Beam's filesystems raise their own error types for a missing or unreadable file.
        raise InputFileError(f"{path}: cannot be opened: {type(exc).__name__}: {str(exc)[:500]}") from exc


def avro_records(path: str, handle, expected_fields: Optional[Iterable[str]] = None) -> Iterator[dict]:
    """Records of an Avro file, blocks bounded; InputFileError for a bad file or a foreign schema."""
    import fastavro

    from regenwatch.pipelines.bounded import ExpansionGuard, avro_guard, install_bounded_avro_codecs

    install_bounded_avro_codecs()
    with avro_guard(ExpansionGuard(what=path)):
        reader = _open_reader(path, handle, fastavro)
        if expected_fields is not None:
            have = {f.get("name") for f in (reader.writer_schema or {}).get("fields", [])}
            missing = sorted(set(expected_fields) - have)
            if missing:
                raise InputFileError(f"{path}: not the expected kind of Avro file: no field {', '.join(missing)}")
        yield from checked(path, reader, "record")


def _open_reader(path, handle, fastavro):
    try:
        return fastavro.reader(handle)
    except Exception as exc:  # pylint: disable=broad-except
        # The header is input too: fastavro raises ValueError, EOFError, SchemaParseException...
        raise InputFileError(f"{path}: not a readable Avro file: {type(exc).__name__}: {str(exc)[:500]}") from exc
