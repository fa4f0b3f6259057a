"""The web console (issue 13, docs/console.md): server-rendered pages for people, at ``/``.

Pages are Jinja2 templates styled with GOV.UK Frontend (vendored, the GOV.UK brand
turned off: decision 0028), in English and Simplified Chinese, usable without
JavaScript. People sign in with their accounts (onceonly.hub.people.service); what a
page shows is decided by the same services and principals as the API's. Every
route stays out of ``/openapi.json``.
"""
