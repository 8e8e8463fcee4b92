import sys

from moderntensor.cli import main

sys.exit(main())
