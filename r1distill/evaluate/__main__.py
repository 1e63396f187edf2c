"""`python -m r1distill.evaluate` = `r1distill evaluate`."""

import sys

from r1distill.evaluate.stage import main

if __name__ == "__main__":
    sys.exit(main())
