"""``python -m recordgpu`` = the ``recordgpu`` command."""
import sys

from .cli import main

sys.exit(main())
