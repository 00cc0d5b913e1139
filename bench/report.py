"""What every bench script prints: the machine's size and Markdown table lines."""

from __future__ import annotations


def total_memory_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def table_line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    """A Markdown table: the header, its rule, the rows."""
    print(table_line(list(columns)))
    print(table_line(["---"] * len(columns)))
    for row in rows:
        print(table_line(row))
