from ..errors import DataErrorBase


class DataError(DataErrorBase):
    """Input data that cannot be used; the message names the file, the record and the fix."""
