"""Personal data: masking what leaves the warehouse, erasing users, keeping them out.

- masking.py     PII classification from the dbt YAML, HMAC hashing, the email guard,
                 encryption and file modes of what is published or exported
- erasure.py     `forget`: delete a user's rows everywhere, purge dlt's archive
- suppression.py the list of erased users that every ingestion run filters on
"""


class PrivacyError(Exception):
    """A PII rule would be broken (or is misconfigured): one line for the user."""
