"""The data stewards' pages of the console (docs/console.md, "Stewards' pages").

Every page calls the services the API's routes call, with the same principal, so the
rules live in one place: access requests, approvals and refusals in
``access.workflow``, grants and revocation in ``access.service``, items, versions and
their lifecycle in ``registry.service``. Every change opens its audit scope as the
API's route does (``audited``), and a refusal is shown as the page's error summary
and audited (``_refused``).
"""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
