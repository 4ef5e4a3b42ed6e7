"""Domain errors of the converter. Each carries the exit code the CLI documents; nothing else maps them."""


class ConvertError(Exception):
    """Base class: the message is meant for the person running the converter."""

    exit_code = 1

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}


class CheckFailed(ConvertError):
    """A parity or accuracy gate failed: nothing was registered."""


class InvalidInput(ConvertError):
    """Bad usage, or inputs that cannot be converted: a malformed classes file, class names that do not match
    the model's output, a model input that is not a fixed-size RGB image, an unreadable sample image."""

    exit_code = 2


class NotFound(InvalidInput):
    """The model, version, alias, classes file or class names asked for do not exist."""


class RegistryUnreachable(ConvertError):
    """The MLflow tracking server did not answer."""

    exit_code = 3
