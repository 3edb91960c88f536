import sys

from pyvcore.cli import main

sys.exit(main())
