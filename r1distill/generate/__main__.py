"""`python -m r1distill.generate` = `r1distill generate`."""

import sys

from r1distill.generate.stage import main

if __name__ == "__main__":
    sys.exit(main())
