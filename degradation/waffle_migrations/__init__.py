"""django-waffle's migrations with its Flag model marked swappable (see 0001_initial.py).

``MIGRATION_MODULES = {"waffle": "degradation.waffle_migrations"}``: waffle 5.0.0 creates its own
``waffle_flag`` tables even when ``WAFFLE_FLAG_MODEL`` names another model (waffle issue #338);
those tables reference ``auth_user`` and ``auth_group`` and stop ``flush`` from truncating them.
These are waffle's four migrations, same names, with ``swappable`` on Flag. On upgrading waffle,
copy any new waffle migrations here.
"""
