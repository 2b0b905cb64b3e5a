import sys

from vggedu.cli import main

sys.exit(main())
