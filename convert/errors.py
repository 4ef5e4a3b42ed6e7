"""Domain errors of the converter. Each carries the exit code the CLI documents; nothing else maps them."""


class ConvertError(Exception):
    """Base class: the message is meant for the person running the converter."""

    exit_code = 1

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}


class CheckFailed(ConvertError):
    """A parity or accuracy gate failed: nothing was registered."""

    exit_code = 1


class NotFound(ConvertError):
    """Bad usage, or the model, version, alias or class names could not be found."""

    exit_code = 2


class RegistryUnreachable(ConvertError):
    """The MLflow tracking server did not answer."""

    exit_code = 3
