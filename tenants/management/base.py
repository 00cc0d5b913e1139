"""Shared base of the project's management commands."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser


class OneLineErrorCommand(BaseCommand):
    """A command whose argument errors are one line on stderr (and exit 2), without a usage block."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.print_usage = lambda file=None: None
        return parser
