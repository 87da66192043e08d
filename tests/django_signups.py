"""A Django site's sign-ups on one node's database, for tests/django_ids_test.cc and
tests/django_migrate_test.cc.

    django_signups.py migrate DB                       Django's auth schema and a group "members"
    django_signups.py schema DB [EXTENSION]            Django's auth schema alone (`migrate`, as a
        site's deployment runs it); with EXTENSION, the rows it writes take marmot_id() ids
    django_signups.py schema-together DB NODE BARRIER [EXTENSION]
        `schema` once every node is ready (BARRIER, as `signups`): every pod migrating at start
    django_signups.py signups DB NODE COUNT BARRIER [EXTENSION]
        waits until every node is ready (BARRIER: a folder, 3 nodes), then signs up COUNT users
        as a site does, each in its own requests: create the user, add it to "members", edit
        it. With EXTENSION (libmarmot_ids without ".so"), ids come from marmot_ids_django.
"""
import os
import sys
import time

import django
from django.conf import settings


def setup(db, extension=None):
    apps = ["django.contrib.contenttypes", "django.contrib.auth"]
    extra = {}
    if extension:
        apps.append("marmot_ids_django.MarmotIdsConfig")
        extra["MARMOT_IDS_EXTENSION"] = extension
    settings.configure(
        INSTALLED_APPS=apps,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db,
                               "OPTIONS": {"timeout": 20}}},
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        USE_TZ=True,
        **extra)
    django.setup()


def wait_for_every_node(barrier, node):
    open(os.path.join(barrier, "ready-%s" % node), "w").close()
    deadline = time.monotonic() + 30
    while len([f for f in os.listdir(barrier) if f.startswith("ready-")]) < 3:
        if time.monotonic() > deadline:
            sys.exit("barrier: the other nodes never got ready")
        time.sleep(0.01)


def migrate():
    """Runs `migrate`; after "database is locked" (README: a deferred transaction that read before
    marmot wrote cannot write) runs this whole command again in a new process, as its user would:
    Django 3.2 leaves its connection inside the failed migration's transaction then."""
    from django.core.management import call_command
    try:
        call_command("migrate", verbosity=0)
    except Exception as e:  # The lock error, or what Django raised while unwinding it.
        cause = e
        while cause is not None and "database is locked" not in str(cause):
            cause = cause.__context__
        attempt = int(os.environ.get("MIGRATE_ATTEMPT", "1"))
        if cause is None or attempt >= 20:
            raise
        print("migrate: database is locked (attempt %d), again" % attempt, file=sys.stderr)
        os.environ["MIGRATE_ATTEMPT"] = str(attempt + 1)
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable] + sys.argv)


def main(argv):
    if argv[1] == "migrate":
        setup(argv[2])
        migrate()
        from django.contrib.auth.models import Group
        Group.objects.create(name="members")
        return
    if argv[1] == "schema":
        setup(argv[2], argv[3] if len(argv) > 3 else None)
        migrate()
        return
    if argv[1] == "schema-together":
        setup(argv[2], argv[5] if len(argv) > 5 else None)
        from django.db import connection
        connection.ensure_connection()  # Loads the extension before the race.
        wait_for_every_node(argv[4], argv[3])  # At once again when run again after a lock.
        migrate()
        return
    db, node, count, barrier = argv[2], argv[3], int(argv[4]), argv[5]
    setup(db, argv[6] if len(argv) > 6 else None)
    from django.contrib.auth.models import Group, User
    members = Group.objects.get(name="members")
    User.objects.exists()  # Opens the connection (and loads the extension) before the race.
    wait_for_every_node(barrier, node)
    for i in range(count):
        user = User.objects.create_user("user-%s-%d" % (node, i), password="secret")
        user.groups.add(members)
        user.first_name = "edited on %s" % node
        user.save()


if __name__ == "__main__":
    main(sys.argv)
