"""Entry point: ``python -m tasks <step> [flags]``."""

from tasks.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
