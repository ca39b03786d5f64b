"""The web app's images app, reduced to what reads thumbfs's rows: the
models (managed = False: thumbfs's schema/postgres.sql owns the tables) and
the serializer the gallery API uses."""
