import sys

from internxtfs.cli import main

sys.exit(main())
