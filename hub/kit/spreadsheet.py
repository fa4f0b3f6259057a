"""Cells of the CSV files people open in a spreadsheet (the audit export, the efficiency
report's export, the command line's ``-o csv``).

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula,
and one that starts with a tab or a carriage return too once it trims them (OWASP,
"CSV Injection"). Text in these files comes from callers, stewards and administrators,
so such a cell is written with a leading apostrophe, which the spreadsheet shows as
text and does not display.
"""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize_formula(cell: str) -> str:
    """``cell`` as a spreadsheet should show it: as text, never run as a formula.

    >>> neutralize_formula('=HYPERLINK("http://x")')
    '\\'=HYPERLINK("http://x")'
    >>> neutralize_formula("record.query")
    'record.query'
    """
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell
