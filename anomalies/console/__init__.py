"""The support console: the admin pages support staff read a tenant's detection on.

    anomaly_page.py  the anomaly list and an anomaly's page (chart, reason, evidence, history, actions)
    series_page.py   a series' page (chart over 1 h … 30 d, baseline, anomalies, mute)
    tenant_page.py   a tenant's detection settings and overview (run now, replay, what-if preview)
    reads.py         a series' chart as SVG, a tenant's overview, the what-if preview
    display.py       cut text, band words, severity badges, who acted (the anomalies' lists use them too)

Every page gets its object through its model admin's own queryset (the staff user's tenants), so
another tenant's anomaly, series or tenant is a 404, and a chart only ever reads the object's own
tenant. The pages read through the selectors and the point store's face (metrics.storage) only
(no `.objects` here: tests/test_layering.py) and write through the services; their templates are
anomalies/templates/admin/console/.

Registration: the tenant and series pages belong to models of other apps, and tenants and metrics
import nothing from anomalies. So those apps define their admins (tenants.admin.TenantAdmin,
metrics.admin.SeriesAdmin) without registering them, the console subclasses them here, and
anomalies/admin.py (the module Django's admin discovers) registers each model once:
Anomaly, Series and Tenant with their console pages. No app unregisters another's admin. A hook the
base admins read was the other way; it would have needed five of them (a form, a column, a field, a URL,
a whole change page) for one user, where a subclass says it in one place.
"""
