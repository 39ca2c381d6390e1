"""Tenants, their API keys and the support staff assigned to them.

`TenantOwned` is the base of every row that belongs to a tenant. Services and selectors
reach such rows only through `for_tenant(tenant)`; `unscoped()` is the explicit, greppable
escape for the few cross-tenant jobs (detection over all tenants, superuser admin).
"""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models


def limit_override_error(name: str, value) -> str | None:
    """Why `value` cannot override the limit `name` for a tenant, or None."""
    if name not in settings.TENANT_LIMITS:
        return f"{name} is not a per-tenant limit; the limits are: {', '.join(settings.TENANT_LIMITS)}."
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"{name} must be a whole number of at least 1, not {value!r}."
    ceiling = settings.TENANT_LIMIT_CEILINGS.get(name)
    if ceiling is not None and value > ceiling:
        return f"{name} may be at most {ceiling}."
    return None


class Tenant(models.Model):
    slug = models.SlugField(max_length=64, unique=True, help_text="Short name used in X-Tenant-ID and commands.")
    name = models.CharField(max_length=200, help_text="Display name.")
    is_active = models.BooleanField(default=True, help_text="Inactive tenants cannot authenticate.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the tenant was created.")
    limits = models.JSONField(
        default=dict, blank=True,
        help_text="Overrides of the per-tenant limits (README, Settings), e.g. {\"MAX_EVENTS_PER_REQUEST\": 5000, "
        "\"POINTS_PER_SECOND\": 50000}. Empty: the defaults.",
    )
    detection_config = models.JSONField(
        default=dict, blank=True,
        help_text="Overrides of the detection defaults for this tenant, e.g. {\"sensitivity\": 0.5} or "
        "{\"residual_threshold\": 8} (the fields of anomalies.engine.DetectionConfig). "
        "Apply to history with run_detection --replay.",
    )
    max_point_age_days = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Points older than this many days are refused at ingest. Empty: back to EARLIEST_TIMESTAMP.",
    )
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Points older than this many days (at least 1) are deleted and refused. Empty: kept forever.",
    )
    late_window_seconds = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="A point arriving this far behind the detection watermark is re-evaluated automatically; "
        "older ones wait for run_detection --replay. Empty: the global default.",
    )
    no_data_alerts = models.BooleanField(
        default=True, db_default=True,
        help_text="A series that has reported steadily and goes silent for max(15 min, 10 x its usual interval) "
        "enters no_data and opens an incident (notified; resolved when its points come back). Untick to turn no-data "
        "detection off (for series sent in bulk, a backfill).",
    )
    staff = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="TenantStaff", related_name="support_tenants", blank=True,
        help_text="Support staff who may see this tenant in the admin.",
    )

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(condition=models.Q(retention_days__isnull=True) | models.Q(retention_days__gte=1),
                                   name="tenant_retention_days_positive"),
            models.CheckConstraint(condition=models.Q(max_point_age_days__isnull=True) | models.Q(max_point_age_days__gte=1),
                                   name="tenant_max_point_age_days_positive"),
        ]

    def __str__(self) -> str:
        return self.slug

    def limit(self, name: str) -> int:
        """The tenant's override of limit `name` when it is a valid one, else the global default."""
        override = self.limits.get(name) if isinstance(self.limits, dict) else None
        if override is None or limit_override_error(name, override):
            return int(settings.CLOUDWATCHDOG[name])
        return override

    def clean(self):
        errors = {}
        if not isinstance(self.limits, dict):
            errors["limits"] = 'Give an object of limit: value pairs, e.g. {"MAX_EVENTS_PER_REQUEST": 5000}.'
        else:
            problems = [problem for name, value in self.limits.items() if (problem := limit_override_error(name, value))]
            burst, batch = self.limit("POINTS_BURST"), self.limit("MAX_EVENTS_PER_REQUEST")
            if not problems and burst < batch:
                # A request of more points than the burst could never pass: 429 for ever to a retrying agent.
                problems = [f"POINTS_BURST ({burst}) must be at least MAX_EVENTS_PER_REQUEST ({batch}): a request of "
                            "more points than the burst could never be accepted."]
            if problems:
                errors["limits"] = problems
        if errors:
            raise ValidationError(errors)


class TenantStaff(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, help_text="The tenant.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, help_text="A support staff user.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="tenantstaff_tenant_user_uniq")]
        verbose_name_plural = "tenant staff"


class UnscopedQuery(Exception):
    """A query of tenant-owned rows that says neither which tenant nor that it means all of them."""


class TenantOwnedQuerySet(models.QuerySet):
    """Fails closed: reading rows needs for_tenant(), for_tenants() or an explicit unscoped()."""

    _scoped = False

    def for_tenant(self, tenant: Tenant) -> "TenantOwnedQuerySet":
        return self._mark_scoped(self.filter(tenant=tenant))

    def for_tenants(self, tenants) -> "TenantOwnedQuerySet":
        return self._mark_scoped(self.filter(tenant__in=tenants))

    def unscoped(self) -> "TenantOwnedQuerySet":
        """Every tenant's rows, on purpose (cross-tenant jobs, a superuser's admin)."""
        return self._mark_scoped(self.all())

    @staticmethod
    def _mark_scoped(queryset: "TenantOwnedQuerySet") -> "TenantOwnedQuerySet":
        queryset._scoped = True
        return queryset

    def _clone(self):
        clone = super()._clone()
        clone._scoped = self._scoped
        return clone

    def _check_scoped(self) -> None:
        if not self._scoped:
            raise UnscopedQuery(f"a query of {self.model.__name__} rows needs for_tenant(), for_tenants() or unscoped()")

    def _fetch_all(self):
        if self._result_cache is None:
            self._check_scoped()
        super()._fetch_all()

    def count(self):
        self._check_scoped()
        return super().count()

    def exists(self):
        self._check_scoped()
        return super().exists()

    def aggregate(self, *args, **kwargs):
        self._check_scoped()
        return super().aggregate(*args, **kwargs)

    def update(self, **kwargs):
        self._check_scoped()
        return super().update(**kwargs)

    def delete(self):
        self._check_scoped()
        return super().delete()

    def iterator(self, chunk_size=None):
        self._check_scoped()
        return super().iterator(chunk_size=chunk_size)


class TenantOwnedManager(models.Manager.from_queryset(TenantOwnedQuerySet)):
    def get_queryset(self):
        queryset = super().get_queryset()
        # A related manager reached from a tenant (tenant.apikey_set) is scoped by its own filter.
        if getattr(getattr(self, "field", None), "name", None) == "tenant":
            queryset._scoped = True
        return queryset


class TenantOwned(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, help_text="The tenant that owns this row.")

    objects = TenantOwnedManager()

    class Meta:
        abstract = True


class ApiKey(TenantOwned):
    SCOPE_INGEST = "ingest"
    SCOPE_READ = "read"
    SCOPE_ALL = "all"
    SCOPES = [(SCOPE_INGEST, "ingest only"), (SCOPE_READ, "read only"), (SCOPE_ALL, "everything")]

    name = models.CharField(max_length=100, blank=True, help_text="What this key is for.")
    prefix = models.CharField(
        max_length=32, unique=True,
        help_text="The first part of the key, shown to identify it (the scope is visible in it).",
    )
    key_hash = models.CharField(max_length=64, help_text="SHA-256 of the whole key; the key itself is never stored.")
    scope = models.CharField(max_length=10, choices=SCOPES, default=SCOPE_ALL, help_text="What the key may do.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the key was issued.")
    revoked_at = models.DateTimeField(null=True, blank=True, help_text="When the key was revoked; revoked keys get 401.")
    last_used_at = models.DateTimeField(null=True, blank=True, help_text="Last authenticated use (minute precision).")

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"], name="apikey_tenant_created")]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.scope})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

# The table raw SQL names (the rollup refresh checks a tenant still exists).
TENANT_TABLE = Tenant._meta.db_table
