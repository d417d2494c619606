"""Small helpers the packages share that belong to none of them: django-q2 schedules kept as
the code wants them (schedules), a package's lazily loaded face (faces), and reads that must
agree taken from one snapshot (snapshots).

The bottom layer: Django and django-q2 only, never another module of batches.
"""
