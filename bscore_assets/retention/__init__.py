"""Retention: every store bounded by a policy of days per kind of data.

``policy`` holds the days, ``plan`` lists what would go (a dry run), ``apply`` removes it and
``records`` keeps what retention learnt (hours retired, when it first saw a key), so that a
later run of a retired hour is refused by name.
"""
