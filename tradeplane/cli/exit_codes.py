"""Exit codes shared by every command, so scripts and CI can tell failures apart."""

OK = 0
INVALID = 1  #: input rejected (manifest errors) or generated files stale
USAGE = 2  #: wrong command line (click's own code for usage errors)
CONFIG = 3  #: settings could not be loaded
