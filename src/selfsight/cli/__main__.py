import sys

from selfsight.cli import main

sys.exit(main())
