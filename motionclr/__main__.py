import sys

from motionclr.cli import main

sys.exit(main())
