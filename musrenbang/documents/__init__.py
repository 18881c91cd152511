"""Documents people open: the exports a Bappeda opens in Excel and the open-data file."""
