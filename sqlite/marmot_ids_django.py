"""Django app: every automatic primary key (AutoField, BigAutoField, SmallAutoField, in every
app, Django's own and many-to-many tables included) takes its value from marmot_id() instead of
SQLite, so rows created on several marmot nodes at once never share an id.

Use (this file on the Python path, for example copied into the project):

    INSTALLED_APPS = [..., "marmot_ids_django.MarmotIdsConfig"]
    MARMOT_IDS_EXTENSION = "/path/to/libmarmot_ids"   # the extension, without ".so"

and start the site's processes with MARMOT_NODE_ID set to the node's -node-id (1 to 1023).
Each new SQLite connection loads the extension; each model saved or bulk-created without a
primary key gets one from `SELECT marmot_id()` on the database it is written to. A primary key
given by the application is kept. Databases of other vendors are left alone.
"""
import os

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router
from django.db.backends.signals import connection_created
from django.db.models.fields import AutoFieldMixin


def _load_extension(sender, connection, **kwargs):
    if connection.vendor != "sqlite":
        return
    raw = connection.connection
    if not hasattr(raw, "enable_load_extension"):
        raise ImproperlyConfigured(
            "marmot_ids_django: this Python's sqlite3 module cannot load extensions (it was "
            "built without them); use one that can, such as Debian's python3")
    raw.enable_load_extension(True)
    try:
        raw.load_extension(settings.MARMOT_IDS_EXTENSION)
    finally:
        raw.enable_load_extension(False)


def _marmot_id(field, instance):
    """The primary key of a new row: Django calls this on save() and bulk_create()."""
    connection = connections[router.db_for_write(type(instance), instance=instance)]
    if connection.vendor != "sqlite":
        return None  # The database assigns it, as without this app.
    with connection.cursor() as cursor:
        cursor.execute("SELECT marmot_id()")
        return cursor.fetchone()[0]


class MarmotIdsConfig(AppConfig):
    name = "marmot_ids_django"
    path = os.path.dirname(os.path.abspath(__file__))

    def ready(self):
        if not getattr(settings, "MARMOT_IDS_EXTENSION", ""):
            raise ImproperlyConfigured(
                "marmot_ids_django: set MARMOT_IDS_EXTENSION to the path of libmarmot_ids")
        connection_created.connect(_load_extension, dispatch_uid="marmot_ids_django")
        AutoFieldMixin.get_pk_value_on_save = _marmot_id
