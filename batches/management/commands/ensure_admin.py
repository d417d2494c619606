import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a local admin user if there is no superuser yet, and say how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default=None,
                            help="Default: a random password, printed once.")

    def handle(self, *args, username: str, password: str | None, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("A superuser exists already; log in with it "
                              "(or: python manage.py changepassword USER).")
            return
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(self.style.SUCCESS(
            f"Created the local admin user. Log in at http://127.0.0.1:8000/ with "
            f"username {username!r} and password {password!r}."
        ))
