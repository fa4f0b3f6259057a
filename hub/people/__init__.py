"""People: stewards, auditors and administrators, their accounts, roles and sign-in."""
