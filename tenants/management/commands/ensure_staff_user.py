"""``manage.py ensure_staff_user``: make sure a staff superuser exists (``make run`` calls it).

The password comes from ``ADMIN_PASSWORD`` when set (and then also resets an existing user's);
otherwise a new user gets a generated password, printed once, and an existing one keeps its own.
"""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from tenants.management.base import OneLineErrorCommand


class Command(OneLineErrorCommand):
    help = "Create a staff superuser if missing; ADMIN_PASSWORD sets or resets its password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--username",
            default=os.environ.get("ADMIN_USERNAME") or "admin",
            help="Default: $ADMIN_USERNAME or 'admin'.",
        )
        parser.add_argument("--email", default="", help="Default: empty.")

    @transaction.atomic
    def handle(self, *args, username: str, email: str, **options) -> None:
        User = get_user_model()
        password = os.environ.get("ADMIN_PASSWORD") or None
        try:
            User.username_validator(username)
        except ValidationError as error:
            raise CommandError(
                f"Invalid username '{username}': {' '.join(error.messages)}"
            ) from error
        user = User.objects.filter(username=username).first()
        created = user is None
        if created:
            user = User(username=username, email=email)
        elif email:
            user.email = email
        promoted = not (user.is_staff and user.is_superuser and user.is_active)
        user.is_staff = user.is_superuser = user.is_active = True
        generated = created and password is None
        if generated:
            password = secrets.token_urlsafe(18)
        if password is not None:
            self._warn_if_weak(password, user)
            user.set_password(password)
        user.save()

        if created:
            self.stdout.write(f"Created staff superuser '{username}'.")
        elif promoted:
            self.stdout.write(f"Made the existing user '{username}' an active staff superuser.")
        if generated:
            self.stdout.write(f"Password (shown once): {password}")
        elif password is not None:
            self.stdout.write(f"Password of '{username}' set from ADMIN_PASSWORD.")
        else:
            self.stdout.write(
                f"Staff user '{username}' exists; password unchanged. "
                "To reset it: ADMIN_PASSWORD=... make run"
            )

    def _warn_if_weak(self, password: str, user) -> None:
        try:
            validate_password(password, user)
        except ValidationError as error:
            self.stderr.write(f"Warning: weak ADMIN_PASSWORD: {' '.join(error.messages)}")
