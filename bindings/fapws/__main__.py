import sys

from fapws.cli import main

sys.exit(main())
