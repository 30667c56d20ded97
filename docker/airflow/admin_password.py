"""Give a user of Airflow's simple auth manager a generated password, once, in a file only its owner reads.

`make airflow` and `make demo` run it on their Airflow home's passwords file (the file
``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE`` names):

    python docker/airflow/admin_password.py PASSWORDS_FILE USER

Airflow would generate a missing password itself, but into a file anyone on the machine may read, and a fixed
admin/admin (what this project's Makefile used to write) is a password everyone knows. So: a missing password,
or the old admin/admin, is replaced by one from ``secrets`` and printed once; the file is (re)written with mode
0600 through a temporary sibling, so it is never half written or briefly readable; a later run only says where
the password is. Other users' entries are kept as they are.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

# Airflow's own generated passwords have 16 characters from an alphabet without look-alikes; ours have 22
# URL-safe ones (128 bits).
PASSWORD_BYTES = 16
PRIVATE = 0o600


def read_passwords(path: Path) -> dict[str, str]:
    """The file's user-to-password object, or an error naming the file and how to start over."""
    if not path.exists():
        return {}
    try:
        passwords = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SystemExit(f"{path}: not JSON ({error}); delete it to generate a new password") from None
    if not isinstance(passwords, dict) or not all(isinstance(value, str) for value in passwords.values()):
        raise SystemExit(f"{path}: not a JSON object of user names to password strings; delete it to generate one")
    return passwords


def write_private(path: Path, passwords: dict[str, str]) -> None:
    """Write ``path`` with mode 0600 from the start: a temporary sibling created 0600, then renamed over it."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump(passwords, file)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def ensure_password(path: Path, user: str) -> str:
    """Make sure ``user`` has a private, non-default password in ``path``; return what to tell the user."""
    passwords = read_passwords(path)
    if passwords.get(user) in (None, "", user):
        passwords[user] = secrets.token_urlsafe(PASSWORD_BYTES)
        write_private(path, passwords)
        return (
            f"Airflow UI: user {user}, password {passwords[user]}\n"
            f"(generated once and shown only now; it stays in {path}, readable only by you)"
        )
    if path.stat().st_mode & 0o777 != PRIVATE:
        path.chmod(PRIVATE)
    return f"Airflow UI: user {user}; the password is in {path}"


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(f"usage: {Path(__file__).name} PASSWORDS_FILE USER")
    print(ensure_password(Path(argv[0]), argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
