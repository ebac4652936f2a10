"""Pure functions on DataFrames and arrays: reading, splitting, encoding. No database."""
