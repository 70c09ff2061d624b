import sys

from tfrecog.cli import main

sys.exit(main())
