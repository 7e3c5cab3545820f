"""`python -m api` runs the server (same as `locus-registry serve`); other arguments go to the CLI."""

import sys

from api.cli import main

raise SystemExit(main(sys.argv[1:] or ["serve"]))
