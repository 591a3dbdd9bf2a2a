"""CSV/TSV/JSONL import: many CRM users start from exports (column mapping configurable)."""

from stimmung.connectors.fileimport.client import ImportFileError, read_rows
from stimmung.connectors.fileimport.source import MAPPABLE_FIELDS, FileImportSource, row_to_mention

__all__ = ["FileImportSource", "ImportFileError", "MAPPABLE_FIELDS", "read_rows", "row_to_mention"]
