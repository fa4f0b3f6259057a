"""The auditors' pages of the console (docs/console.md, "Auditors' pages")."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
