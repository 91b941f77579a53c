"""User-facing errors.

Anything a user can cause (bad config key, malformed architecture file, missing data,
corrupted checkpoint, NaN loss) raises a subclass of :class:`NasforgeError` with one
sentence that names the problem. The CLI prints it as ``nasforge: error: ...`` and
exits with status 2, without a traceback.
"""


class NasforgeError(Exception):
    """Base class for errors caused by user input; the message is shown as-is."""


class ArchError(NasforgeError, ValueError):
    """An architecture file or object is malformed."""


class ConfigError(NasforgeError, ValueError):
    """A configuration file or flag is wrong (unknown key, bad value)."""


class DataError(NasforgeError):
    """Data is missing or malformed."""


class CheckpointError(NasforgeError):
    """A checkpoint cannot be read or does not fit the run."""


class TrainingError(NasforgeError):
    """Training diverged (NaN/inf loss) or cannot continue."""
