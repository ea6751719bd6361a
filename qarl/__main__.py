import sys

from qarl.cli import main

sys.exit(main())
