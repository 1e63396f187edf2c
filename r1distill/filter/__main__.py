"""`python -m r1distill.filter` = `r1distill filter`."""

import sys

from r1distill.filter.stage import main

if __name__ == "__main__":
    sys.exit(main())
