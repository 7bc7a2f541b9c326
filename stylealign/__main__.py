import sys

from stylealign.cli import main

sys.exit(main())
