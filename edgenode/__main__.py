import sys

from edgenode.cli import main

sys.exit(main())
