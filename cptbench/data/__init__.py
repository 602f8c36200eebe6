"""Data: the refer-layout loader, detector proposals, the bundled synthetic benchmark, data checks."""
