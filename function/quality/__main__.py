import sys

from function.quality.cli import main

sys.exit(main())
