"""manage.py create_support_user USERNAME --tenant SLUG: a support staff user for a tenant's console."""
import getpass
import sys

from django.core.management.base import BaseCommand, CommandError

from tenants.selectors import tenant_get
from tenants.services import support_user_assign


class Command(BaseCommand):
    help = ("Create (or reuse) the staff user USERNAME and assign it to tenant SLUG: in the admin it sees that "
            "tenant's anomalies, series, baselines and console pages, and no other tenant's. Asks for a password "
            "for a new user unless --password-stdin or --no-password is given.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--tenant", required=True, help="the tenant's slug (repeat the command for more tenants)")
        parser.add_argument("--can-act", action="store_true",
                            help="may also run detection, replay and change detection settings (the tenant's, and its "
                                 "detection rules in the admin); never the tenant's slug, name, active flag, limits "
                                 "or retention")
        parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        parser.add_argument("--no-password", action="store_true", help="no password (set one later in the admin)")

    def handle(self, *args, username, tenant, can_act, password_stdin, no_password, **options):
        found = tenant_get(slug=tenant)
        if found is None:
            raise CommandError(f"No tenant {tenant!r}: create it with create_tenant first.")
        password = None
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        elif not no_password:
            password = getpass.getpass(f"Password for {username}: ")
        if password is not None and len(password) < 8:
            raise CommandError("The password needs at least 8 characters.")
        user, created = support_user_assign(username=username, tenant=found, password=password, can_act=can_act)
        self.stdout.write(f"{'created' if created else 'updated'} staff user {user.username}: tenant {found.slug}"
                          f"{', may act' if can_act else ''}")
