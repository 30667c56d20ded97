"""Which data sources ``stage`` may read: an allow-list of prefixes, matched on normalised paths.

A prefix is a URI prefix (``hf://``, ``hf://nyu-mll/glue``, ``s3://bucket/data/``) or an absolute local folder
(``/srv/data``). A source is allowed when a prefix holds it whole path segment by whole path segment, so
``s3://bucket`` allows ``s3://bucket/x`` but not ``s3://bucket-other``. A local path (and ``file://``) is
compared after ``~`` is expanded and symlinks and ``..`` are resolved, on both sides, so neither a link nor
``..`` leads out of an allowed folder. A URI with a ``.`` or ``..`` segment is refused outright: an object store
takes them literally, a filesystem layer may not, and a data set never needs them. An empty allow-list
restricts nothing (a user staging files on their own machine); the pipeline always passes one.

The check runs before anything is read: on the source, then on each file found in a source folder (a link in
an allowed folder may point anywhere).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from tasks.errors import ConfigError

_SCHEME = "://"
_LOCAL = "file"
_DOT_SEGMENTS = (".", "..")


def _segments(location: str) -> tuple[str, tuple[str, ...]]:
    """(scheme, path segments) of a source or prefix; scheme ``file`` for a local path, resolved."""
    scheme, separator, rest = location.partition(_SCHEME)
    if not separator or scheme == _LOCAL:
        path = os.path.realpath(os.path.expanduser(rest if separator else location))
        return _LOCAL, tuple(part for part in path.split("/") if part)
    parts = rest.split("/")
    if any(part in _DOT_SEGMENTS for part in parts):
        raise ConfigError(f"{location!r} has a '.' or '..' path segment; name the location itself")
    return scheme, tuple(parts[:-1] if parts[-1:] == [""] else parts)


def parse_prefixes(prefixes: Sequence[str], where: str = "--allowed-sources") -> list[str]:
    """``prefixes`` checked: each a URI prefix (``scheme://...``) or an absolute local folder; a ConfigError
    naming ``where`` (the flag or the Variable they came from) otherwise."""
    if isinstance(prefixes, str) or not all(isinstance(prefix, str) and prefix.strip() for prefix in prefixes):
        raise ConfigError(f"{where} must be a list of non-empty prefixes, got {prefixes!r}")
    for prefix in prefixes:
        scheme, separator, _ = prefix.partition(_SCHEME)
        if separator and not scheme:
            raise ConfigError(f"{where}: {prefix!r} has no scheme before '://' (e.g. hf://, s3://bucket/data/)")
        if not separator and not os.path.isabs(os.path.expanduser(prefix)):
            raise ConfigError(f"{where}: {prefix!r} is a relative path; a local prefix is an absolute folder")
        try:
            _segments(prefix)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
    return list(prefixes)


def is_allowed(source: str, prefixes: Sequence[str]) -> bool:
    """Whether one of ``prefixes`` holds ``source`` (see the module docstring); an empty list holds everything."""
    if not prefixes:
        return True
    scheme, segments = _segments(source)
    for prefix in prefixes:
        allowed_scheme, allowed = _segments(prefix)
        if scheme == allowed_scheme and segments[: len(allowed)] == allowed:
            return True
    return False


def check_source(source: str, prefixes: Sequence[str], what: str = "--source") -> None:
    """Refuse ``source`` unless a prefix holds it: a ConfigError (exit 2: a retry reads nothing more) naming the
    source, where a local one really leads, and the allowed prefixes."""
    if is_allowed(source, prefixes):
        return
    scheme, segments = _segments(source)
    resolved = "/" + "/".join(segments) if scheme == _LOCAL else source
    leads = f" (which resolves to {resolved})" if resolved != source else ""
    raise ConfigError(
        f"{what} {source!r}{leads} is outside the allowed sources: {', '.join(prefixes)}; stage from a location under one of "
        "them, or have the allow-list extended"
    )
