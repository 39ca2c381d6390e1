"""manage.py create_tenant SLUG: create a tenant (or reuse it) and issue an API key."""
from django.core.management.base import BaseCommand, CommandError

from tenants.models import ApiKey
from tenants.services import api_key_issue, tenant_create


class Command(BaseCommand):
    help = (
        "Create the tenant SLUG (or reuse it if it exists) and issue a new API key. "
        "The plaintext key is printed alone on the last line of stdout, once: it is stored only as a hash."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="tenant slug (letters, digits, - and _), used in X-Tenant-ID")
        parser.add_argument("--name", default="", help="display name (default: the slug)")
        parser.add_argument(
            "--scope", default=ApiKey.SCOPE_ALL, choices=[s for s, _ in ApiKey.SCOPES],
            help="what the key may do: ingest (ingest only), read (GET endpoints), all (default)",
        )

    def handle(self, *args, slug, name, scope, **options):
        from django.core.exceptions import ValidationError
        from django.core.validators import validate_slug

        try:
            validate_slug(slug)
        except ValidationError:
            raise CommandError(f"{slug!r} is not a valid slug: use letters, digits, '-' and '_'.")
        tenant = tenant_create(slug=slug, name=name)
        issued = api_key_issue(tenant=tenant, scope=scope, name="created by create_tenant")
        self.stderr.write(f"tenant {tenant.slug} (id {tenant.id}): new {scope} key {issued.api_key.prefix}…")
        self.stdout.write(issued.plaintext)
