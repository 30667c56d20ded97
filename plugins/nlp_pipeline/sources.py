"""Which data sources a run may stage: the allow-list in the Airflow Variable ``nlp_allowed_sources``.

Whoever triggers a run chooses its ``source`` Param; what the workers may read is not theirs to choose. The
Variable holds a JSON list of prefixes (``["hf://nyu-mll/glue", "s3://my-bucket/data/", "/srv/data/"]``),
matched as ``tasks.data.sources`` matches them (whole path segments, local paths resolved); unset, only the
Hugging Face hub. Every platform builds its stage command through ``commands.values``, which refuses a source
outside the list before any step starts, and passes the list on as ``stage --allowed-sources``, so the pod or
job refuses it too.
"""

from __future__ import annotations

import json

from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowFailException

from tasks.data.sources import check_source, parse_prefixes
from tasks.errors import ConfigError

VARIABLE = "nlp_allowed_sources"
# Unset, the hub only: neither the workers' files nor any bucket their credentials reach.
DEFAULT_ALLOWED_SOURCES = ("hf://",)


def allowed_sources() -> list[str]:
    """The Variable's prefixes (its default when unset); a Variable that is not a JSON list of prefixes fails
    the task, not retried."""
    configured = Variable.get(VARIABLE, default=None)
    if configured is None:
        return list(DEFAULT_ALLOWED_SOURCES)
    where = f"the Airflow Variable {VARIABLE}"
    try:
        prefixes = parse_prefixes(json.loads(configured), where)
    except ValueError as error:
        raise AirflowFailException(f"{where} is not JSON ({error}); set it to a JSON list of prefixes") from None
    except ConfigError as error:
        raise AirflowFailException(str(error)) from None
    if not prefixes:  # to the step, no prefixes means no restriction: an empty list allows nothing, said at once
        raise AirflowFailException(f"{where} is an empty list: no source may be staged; list the allowed prefixes")
    return prefixes


def checked(source: str) -> list[str]:
    """The allowed prefixes, once ``source`` is known to lie under one; otherwise the task fails, not retried
    (a retry reads the same Variable), naming the source and the prefixes."""
    prefixes = allowed_sources()
    try:
        check_source(source, prefixes, what="source")
    except ConfigError as error:
        raise AirflowFailException(f"{error} (the Airflow Variable {VARIABLE})") from None
    return prefixes
