"""Registry rules: who owns what, which schemas are acceptable, what the catalogue says."""

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from onceonly.hub.audit.service import AuditScope
from onceonly.hub.kit.base_urls import base_url_problem, local_host_problem
from onceonly.hub.kit.clock import Clock, aware
from onceonly.hub.kit.problems import InvalidRequest
from onceonly.hub.registry import compat, repository, schema_rules, validation
from onceonly.hub.registry import jwks as jwks_rules
from onceonly.hub.registry.exceptions import (
    AdapterUrlNotHttps,
    CompatibilityNotJudged,
    IncompatibleVersion,
    InvalidSchema,
    ItemRetired,
    NotSecondPerson,
    NotSteward,
    RegistryChangeNotFound,
    RegistryChangeNotPending,
    RegistryConflict,
    UnknownDepartment,
    UnknownItem,
    UnknownVersion,
)
from onceonly.hub.registry.models import Client, Department, Item, ItemVersion, RegistryChange
from onceonly.hub.registry.schemas import (
    ClientIn,
    ClientOut,
    DepartmentIn,
    DepartmentList,
    DepartmentOut,
    ItemDocument,
    ItemList,
    ItemOut,
    ItemQuery,
    ItemVersionOut,
    LegalBasis,
    RegistryChangeList,
    RegistryChangeOut,
    VersionDocument,
    VersionList,
    VersionSummary,
)


@dataclass(frozen=True)
class Actor:
    """Who changes the registry: a person with the departments they steward, or
    ``departments=None`` for every department (the break-glass token)."""

    name: str
    departments: frozenset[str] | None = None


@dataclass(frozen=True)
class PutResult:
    """What a PUT of an item did: the item as it is now, and the change that waits for
    a second person (None: everything was applied)."""

    item: ItemOut
    change: RegistryChangeOut | None = None


def require_steward(actor: Actor, department: str) -> None:
    """Stewards manage only their own department's items."""
    if actor.departments is not None and department not in actor.departments:
        raise NotSteward(f"{actor.name!r} is not a steward of department {department!r}")


@dataclass(frozen=True)
class ServedItem:
    """An item as the exchange needs it: the row and the version to validate against."""

    item: Item
    version: ItemVersion


def _department_out(row: Department) -> DepartmentOut:
    return DepartmentOut(
        id=row.id, name=row.name, description=row.description, adapter_url=row.adapter_url
    )


def client_out(row: Client) -> ClientOut:
    kids = [str(key.get("kid")) for key in row.jwks.get("keys", [])]
    return ClientOut(
        client_id=row.client_id, department=row.department_id, status=row.status, kids=kids
    )


def _item_out(row: Item, latest: ItemVersion) -> ItemOut:
    return ItemOut(
        id=row.id,
        title=row.title,
        description=row.description,
        owner=row.owner_id,
        sharing_class=row.sharing_class,
        classification=row.classification,
        legal_basis=LegalBasis(
            text=row.legal_basis_text or "-", reference=row.legal_basis_reference
        ),
        retention=row.retention,
        tags=list(row.tags),
        compatibility=row.compatibility,
        lifecycle=row.lifecycle,
        latest_version=row.latest_version,
        personal_fields=list(latest.personal_fields),
    )


def _check_adapter_url(url: str, *, production: bool, loopback_allowed: bool = False) -> None:
    """An adapter URL is a base the hub joins its paths under (``/v1/events``,
    ``/v1/items/{item}/records/query``): no query, fragment or user information. A
    production hub calls adapters over HTTPS only, and never on its own machine or link
    (loopback, link-local: cloud metadata); private networks are allowed (decision 0060)."""
    # not urlsplit: it raises on a bracketed host that is no address (base_url_problem says so)
    if production and url.partition(":")[0].lower() != "https":
        raise AdapterUrlNotHttps(
            f"adapter_url {url!r} is not https://: a production hub calls"
            " adapters over HTTPS only; put the adapter behind a TLS proxy"
        )
    problem = base_url_problem(url)
    if problem is None and production:
        problem = local_host_problem(url, loopback_allowed=loopback_allowed)
        if problem is not None and local_host_problem(url, loopback_allowed=True) is None:
            problem += (  # the one refusal a setting lifts: say which (an operator's review)
                "; a hub whose adapters run on its own host allows it with"
                " adapters_on_loopback (ONCEONLY_ADAPTERS_ON_LOOPBACK=true)"
            )
    if problem is not None:
        raise InvalidRequest(f"adapter_url {url!r} is refused: {problem}")


async def put_department(
    session: AsyncSession,
    *,
    department_id: str,
    body: DepartmentIn,
    scope: AuditScope,
    require_https: bool,
    loopback_allowed: bool = False,
) -> DepartmentOut:
    """Register a department, or change it. With ``require_https`` (a production hub) its
    adapter URL must be https://: the hub sends subjects and records to it."""
    scope.note(department=department_id)
    if body.adapter_url:
        _check_adapter_url(
            body.adapter_url, production=require_https, loopback_allowed=loopback_allowed
        )
    row = await repository.get_department(session, department_id)
    if row is None:
        row = Department(id=department_id, name=body.name)
        repository.add(session, row)
    row.name, row.description, row.adapter_url = body.name, body.description, body.adapter_url
    await session.flush()
    await scope.record_change(session)
    return _department_out(row)


async def put_client(
    session: AsyncSession, *, client_id: str, body: ClientIn, scope: AuditScope
) -> ClientOut:
    """Register a client, or replace its keys (a department rotates keys this way)."""
    scope.note(target=client_id, department=body.department)
    if await repository.get_department(session, body.department) is None:
        raise UnknownDepartment(f"no department {body.department!r}; register it first")
    normalized = jwks_rules.normalize_jwks(body.jwks)
    row = await repository.get_client(session, client_id)
    if row is None:
        row = Client(client_id=client_id, department_id=body.department, jwks=normalized)
        repository.add(session, row)
    elif row.department_id != body.department:
        raise RegistryConflict(f"client {client_id!r} belongs to another department")
    row.jwks = normalized
    await session.flush()
    await scope.record_change(session)
    return client_out(row)


def _check_document(schema: dict[str, Any], examples: list[dict[str, Any]]) -> None:
    """The schema is acceptable and every example is valid under it (refusals name a pointer)."""
    schema_rules.check_schema(schema)
    validator = validation.validator_for(schema, validation.fingerprint(schema))
    for position, example in enumerate(examples):
        schema_rules.check_text(example, f"/examples/{position}")
        errors = validation.record_errors(validator, example)
        if errors:
            raise InvalidSchema(f"/examples/{position} does not match the schema: {errors[0]}")


async def put_item(
    session: AsyncSession,
    *,
    item_id: str,
    document: ItemDocument,
    scope: AuditScope,
    actor: Actor,
) -> PutResult:
    """Register an item with its first schema version, or update its metadata.

    The schema of an existing item never changes here: a different schema is a new
    version, which must pass the item's compatibility check. A change that one steward
    may not make alone (:func:`dangerous_changes`) is kept as a pending change for an
    administrator; the rest of the document is applied at once.
    """
    scope.note(item=item_id, department=document.owner)
    if document.id != item_id:
        raise RegistryConflict(
            f"the document's id {document.id!r} differs from the URL's {item_id!r}"
        )
    require_steward(actor, document.owner)
    if await repository.get_department(session, document.owner) is None:
        raise UnknownDepartment(f"no department {document.owner!r}; register it first")
    _check_document(document.json_schema, document.examples)
    fingerprint = validation.fingerprint(document.json_schema)
    row = await repository.get_item_for_update(session, document.id)
    if row is None:
        row = Item(
            id=document.id,
            title=document.title,
            owner_id=document.owner,
            sharing_class=document.sharing_class,
            classification=document.classification,
        )
        repository.add(session, row)
        latest = ItemVersion(
            item_id=document.id,
            version=1,
            schema_=document.json_schema,
            fingerprint=fingerprint,
            personal_fields=schema_rules.personal_fields(document.json_schema),
        )
        await session.flush()
        repository.add(session, latest)
        proposed = _opening_a_new_item(document, personal=bool(latest.personal_fields))
    else:
        latest = await _latest(session, row)
        versions = await repository.item_versions(session, row.id)
        known = {v.fingerprint for v in versions}
        _refuse_takeover_or_new_schema(row, known, document, fingerprint)
        proposed = dangerous_changes(row, document, personal=ever_personal(versions))
    _apply_metadata(row, document)
    for member, change in proposed.items():  # these wait for an administrator
        setattr(row, member, change["from"])
    await session.flush()
    waiting = await _propose(session, row=row, changes=proposed, actor=actor, scope=scope)
    await scope.record_change(session, version=row.latest_version)
    return PutResult(item=_item_out(row, latest), change=waiting)


def judge_new_item(document: ItemDocument) -> dict[str, dict[str, str]]:
    """What :func:`put_item` would decide for a new item's ``document``, changing
    nothing: the refusal of its schema or examples, else the members that would wait
    for an administrator (for a verdict shown before submitting)."""
    _check_document(document.json_schema, document.examples)
    personal = bool(schema_rules.personal_fields(document.json_schema))
    return _opening_a_new_item(document, personal=personal)


def _refuse_takeover_or_new_schema(
    row: Item, known: set[str], document: ItemDocument, fingerprint: str
) -> None:
    """Metadata may change; the owner may not, and the schema must be one of the versions
    (so that re-importing a catalogue whose items have later versions changes nothing)."""
    if row.owner_id != document.owner:
        raise RegistryConflict(f"item {row.id!r} is owned by {row.owner_id!r}")
    if fingerprint not in known:
        raise RegistryConflict(
            f"item {row.id!r} already has a different schema (version {row.latest_version}); "
            "a changed schema must be registered as a new version"
        )


def _apply_metadata(row: Item, document: ItemDocument) -> None:
    row.title = document.title
    row.description = document.description
    row.sharing_class = document.sharing_class
    row.classification = document.classification
    row.legal_basis_text = document.legal_basis.text
    row.legal_basis_reference = document.legal_basis.reference
    row.retention = document.retention
    row.tags = list(document.tags)
    row.compatibility = document.compatibility


async def _latest(session: AsyncSession, row: Item) -> ItemVersion:
    version = await repository.get_version(session, row.id, row.latest_version)
    if version is None:  # the schema guarantees it; a broken database is a 500
        raise RuntimeError(f"item {row.id} has no version {row.latest_version}")
    return version


async def list_items(session: AsyncSession, query: ItemQuery | None = None) -> ItemList:
    """The catalogue, or the items matching every criterion of ``query``."""
    rows = await repository.search_items(session, query or ItemQuery())
    if query is not None and query.tag is not None:
        rows = [row for row in rows if query.tag in row.tags]
    versions = {
        (v.item_id, v.version): v
        for v in await repository.list_versions(session, [r.id for r in rows])
    }
    return ItemList(items=[_item_out(r, versions[(r.id, r.latest_version)]) for r in rows])


async def describe_item(session: AsyncSession, item_id: str) -> ItemOut:
    row = await repository.get_item(session, item_id)
    if row is None:
        raise UnknownItem(f"there is no data item {item_id!r}")
    return _item_out(row, await _latest(session, row))


async def describe_version(session: AsyncSession, item_id: str, version: int) -> ItemVersionOut:
    row = await repository.get_version(session, item_id, version)
    if row is None:
        if await repository.get_item(session, item_id) is None:
            raise UnknownItem(f"there is no data item {item_id!r}")
        raise UnknownVersion(f"data item {item_id!r} has no version {version}")
    return ItemVersionOut(item=item_id, version=version, json_schema=row.schema_)


async def item_for_exchange(session: AsyncSession, item_id: str) -> ServedItem:
    """The item and its latest version, if it can be served at all."""
    row = await repository.get_item(session, item_id)
    if row is None:
        raise UnknownItem(f"there is no data item {item_id!r}")
    if row.lifecycle == "retired":
        raise ItemRetired(f"data item {item_id!r} is retired and no longer served")
    return ServedItem(item=row, version=await _latest(session, row))


async def department(session: AsyncSession, department_id: str) -> Department:
    row = await repository.get_department(session, department_id)
    if row is None:
        raise UnknownDepartment(f"there is no department {department_id!r}")
    return row


async def list_departments(session: AsyncSession) -> DepartmentList:
    rows = await repository.list_departments(session)
    return DepartmentList(departments=[_department_out(row) for row in rows])


async def get_department(session: AsyncSession, department_id: str) -> DepartmentOut:
    return _department_out(await department(session, department_id))


async def _item_to_change(session: AsyncSession, item_id: str, actor: Actor) -> Item:
    row = await repository.get_item_for_update(session, item_id)
    if row is None:
        raise UnknownItem(f"there is no data item {item_id!r}")
    require_steward(actor, row.owner_id)
    return row


async def add_version(
    session: AsyncSession,
    *,
    item_id: str,
    document: VersionDocument,
    scope: AuditScope,
    actor: Actor,
) -> ItemOut:
    """Register the next schema version, if the item's compatibility mode allows it.

    Sending the latest version's schema again changes nothing (a retried upload).
    """
    scope.note(item=item_id)
    row = await _item_to_change(session, item_id, actor)
    scope.note(department=row.owner_id)
    earlier = await repository.item_versions(session, item_id)
    fingerprint = _judge_version(row, document, earlier)
    if earlier[-1].fingerprint != fingerprint:
        row.latest_version = earlier[-1].version + 1
        latest = ItemVersion(
            item_id=item_id,
            version=row.latest_version,
            schema_=document.json_schema,
            fingerprint=fingerprint,
            personal_fields=schema_rules.personal_fields(document.json_schema),
        )
        repository.add(session, latest)
    else:
        latest = earlier[-1]
    await session.flush()
    await scope.record_change(session, version=row.latest_version)
    return _item_out(row, latest)


def _judge_version(row: Item, document: VersionDocument, earlier: list[ItemVersion]) -> str:
    """The checks a new version passes before it is registered (the fingerprint of its
    schema when it does); an unchanged schema (a retried upload) passes as it is."""
    if row.lifecycle == "retired":
        raise ItemRetired(f"data item {row.id!r} is retired; it takes no new versions")
    _check_document(document.json_schema, document.examples)
    fingerprint = validation.fingerprint(document.json_schema)
    if earlier[-1].fingerprint != fingerprint:
        _check_compatibility(row, document.json_schema, [v.schema_ for v in earlier])
        _refuse_personal_fields_into_unconditional(row, document.json_schema, earlier[-1])
    return fingerprint


async def judge_version(
    session: AsyncSession, *, item_id: str, document: VersionDocument, actor: Actor
) -> int:
    """The verdict :func:`add_version` would give ``document``, changing nothing: the
    version number it would register (the latest's when the schema is the latest's
    again), or the refusal it would raise (for a verdict shown before submitting)."""
    row = await repository.get_item(session, item_id)
    if row is None:
        raise UnknownItem(f"there is no data item {item_id!r}")
    require_steward(actor, row.owner_id)
    earlier = await repository.item_versions(session, item_id)
    latest = earlier[-1]
    unchanged = _judge_version(row, document, earlier) == latest.fingerprint
    return latest.version if unchanged else latest.version + 1


def _mode(row: Item) -> compat.Mode:
    return row.compatibility  # type: ignore[return-value]  # a Mode, checked on the way in


def _check_compatibility(row: Item, schema: dict[str, Any], earlier: list[dict[str, Any]]) -> None:
    mode = _mode(row)
    try:
        compat.check_compatible(schema, earlier, mode)
    except compat.Incompatible as error:
        raise IncompatibleVersion(
            f"version {len(earlier) + 1} of {row.id!r} is {error} (mode {mode})"
        ) from None
    except compat.CannotJudge as error:
        raise CompatibilityNotJudged(
            f"{error} (mode {mode}); the registry refuses a change it cannot judge"
        ) from None


_TRANSITIONS = {
    "deprecated": {"active", "deprecated"},
    "retired": {"active", "deprecated", "retired"},
}


async def change_lifecycle(
    session: AsyncSession,
    *,
    item_id: str,
    lifecycle: str,
    scope: AuditScope,
    actor: Actor,
    clock: Clock,
) -> ItemOut:
    """Deprecate (still served, marked as such) or retire (refused from now on) an item.

    Retiring is final; asking for the state an item is already in changes nothing.
    """
    scope.note(item=item_id)
    row = await _item_to_change(session, item_id, actor)
    scope.note(department=row.owner_id)
    if row.lifecycle not in _TRANSITIONS[lifecycle]:
        raise RegistryConflict(
            f"data item {item_id!r} is {row.lifecycle}; it cannot become {lifecycle}"
        )
    if row.lifecycle != lifecycle and lifecycle == "deprecated":
        row.deprecated_at = clock.now()
    row.lifecycle = lifecycle
    await session.flush()
    await scope.record_change(session, version=row.latest_version)
    return _item_out(row, await _latest(session, row))


def _fields(schema: dict[str, Any]) -> list[str]:
    properties = schema.get("properties")
    return sorted(properties) if isinstance(properties, dict) else []


async def list_versions(session: AsyncSession, item_id: str) -> VersionList:
    row = await repository.get_item(session, item_id)
    if row is None:
        raise UnknownItem(f"there is no data item {item_id!r}")
    versions = await repository.item_versions(session, item_id)
    return VersionList(
        item=item_id,
        latest_version=row.latest_version,
        versions=[
            VersionSummary(
                version=v.version,
                fingerprint=v.fingerprint,
                personal_fields=list(v.personal_fields),
                fields=_fields(v.schema_),
                created_at=aware(v.created_at),
            )
            for v in versions
        ],
    )


def version_fields(schema: dict[str, Any]) -> list[str]:
    """The top-level fields a version defines (what a grant for "all fields" covers)."""
    return _fields(schema)


# --- two people for dangerous changes (docs/registry.md) -------------------------------

# How open each sharing class is: opening an item with personal fields needs two people.
SHARING_OPENNESS = {"none": 0, "conditional": 1, "unconditional": 2}


def ever_personal(versions: list[ItemVersion]) -> bool:
    """Whether any version of an item marks a field personal: what the two-person rule
    asks, not whether the latest does. ``x-personal`` is an annotation, so a version
    that only drops it is compatible in every mode; it does not make the data any less
    personal, and must not let one steward open the item alone (decision 0059)."""
    return any(version.personal_fields for version in versions)


def dangerous_changes(
    row: Item, document: ItemDocument, *, personal: bool
) -> dict[str, dict[str, str]]:
    """The members of ``document`` that one steward may not change alone: a more open
    sharing class of an item with personal fields (``personal``: in any of its versions,
    :func:`ever_personal`), a looser compatibility mode."""
    changes: dict[str, dict[str, str]] = {}
    opens = SHARING_OPENNESS[document.sharing_class] > SHARING_OPENNESS[row.sharing_class]
    if personal and opens:
        changes["sharing_class"] = {"from": row.sharing_class, "to": document.sharing_class}
    if compat.loosens_compatibility(_mode(row), document.compatibility):
        changes["compatibility"] = {"from": row.compatibility, "to": document.compatibility}
    return changes


def _opening_a_new_item(document: ItemDocument, *, personal: bool) -> dict[str, dict[str, str]]:
    """A new item with personal fields registered ``unconditional`` starts
    ``conditional``; its opening waits for an administrator like any other."""
    if personal and document.sharing_class == "unconditional":
        return {"sharing_class": {"from": "conditional", "to": "unconditional"}}
    return {}


def _refuse_personal_fields_into_unconditional(
    row: Item, schema: dict[str, Any], latest: ItemVersion
) -> None:
    """A version may not bring personal fields into an item that every department reads
    without asking: that would open them by one steward's hand. Make the item
    ``conditional`` first (one step: it tightens), then add the version."""
    added = set(schema_rules.personal_fields(schema)) - set(latest.personal_fields)
    if row.sharing_class == "unconditional" and added:
        raise RegistryConflict(
            f"data item {row.id!r} is unconditional: a version cannot add personal fields"
            f" ({', '.join(sorted(added))}); make it conditional first, then add the version"
        )


def describe_changes(changes: dict[str, Any]) -> str:
    return ", ".join(f"{name} {c['from']} → {c['to']}" for name, c in sorted(changes.items()))


def _change_out(change: RegistryChange, owner: str) -> RegistryChangeOut:
    return RegistryChangeOut(
        id=change.id,
        item=change.item_id,
        owner=owner,
        changes=change.changes,
        status=change.status,
        requested_by=change.requested_by,
        requested_at=change.requested_at,
        decided_by=change.decided_by,
        decided_at=change.decided_at,
        reason=change.reason,
    )


async def _propose(
    session: AsyncSession,
    *,
    row: Item,
    changes: dict[str, dict[str, str]],
    actor: Actor,
    scope: AuditScope,
) -> RegistryChangeOut | None:
    """Keep ``changes`` for an administrator. The same change asked again is the one that
    waits already (a retried upload); another one waits its turn."""
    if not changes:
        return None
    change = await repository.pending_change(session, row.id)
    if change is not None and change.changes != changes:
        raise RegistryConflict(
            f"change {change.id} of {row.id!r} ({describe_changes(change.changes)}) waits for"
            " an administrator; it must be decided first"
        )
    if change is None:
        change = RegistryChange(item_id=row.id, changes=changes, requested_by=actor.name)
        repository.add(session, change)
        try:
            await session.flush()
        except IntegrityError:  # the database's own guard (uq_registry_changes_pending)
            raise RegistryConflict(f"another change of {row.id!r} waits already") from None
    scope.note(
        target=change.id,
        fields=sorted(changes),
        reason=f"waits for a second person: {describe_changes(changes)}",
    )
    return _change_out(change, row.owner_id)


async def list_changes(
    session: AsyncSession, *, status: str | None, item: str | None
) -> RegistryChangeList:
    rows = await repository.list_changes(session, status=status, item=item, limit=1000)
    return RegistryChangeList(changes=[_change_out(change, owner) for change, owner in rows])


async def _change(session: AsyncSession, change_id: str) -> RegistryChange:
    change = await repository.get_change(session, change_id)
    if change is None:
        raise RegistryChangeNotFound(f"there is no registry change {change_id!r}")
    return change


async def get_change(session: AsyncSession, change_id: str) -> RegistryChangeOut:
    change = await _change(session, change_id)
    item = await repository.get_item(session, change.item_id)
    assert item is not None  # a foreign key
    return _change_out(change, item.owner_id)


async def decide_change(
    session: AsyncSession,
    *,
    change_id: str,
    approve: bool,
    decider: str,
    reason: str | None,
    scope: AuditScope,
    clock: Clock,
) -> RegistryChangeOut:
    """An administrator approves (the item changes now) or refuses a pending change; not
    the person who asked for it. Compare-and-set: of two decisions, one wins."""
    scope.note(target=change_id)
    change = await _change(session, change_id)
    row = await repository.get_item_for_update(session, change.item_id)
    assert row is not None  # a foreign key
    scope.note(item=row.id, department=row.owner_id, fields=sorted(change.changes))
    if change.status != "pending":
        raise _not_pending(change)
    if decider == change.requested_by:
        raise NotSecondPerson(
            f"{decider!r} asked for change {change.id}; another person decides it"
        )
    if approve:
        _apply_change(row, change)
    settled = await repository.settle_change(
        session,
        change_id=change.id,
        status="approved" if approve else "refused",
        decided_by=decider,
        decided_at=clock.now(),
        reason=reason,
    )
    if not settled:
        raise _not_pending(await _change(session, change_id))
    await session.flush()
    await scope.record_change(session, version=row.latest_version, reason=reason)
    return _change_out(await _change(session, change_id), row.owner_id)


def _not_pending(change: RegistryChange) -> RegistryChangeNotPending:
    by = f" by {change.decided_by!r}" if change.decided_by else ""
    return RegistryChangeNotPending(
        f"registry change {change.id} was {change.status}{by}; only a pending change is decided",
        extra={"state": change.status},
    )


def _apply_change(row: Item, change: RegistryChange) -> None:
    """The item must still be as the change found it (else it is stale: refuse it)."""
    for member, values in change.changes.items():
        if getattr(row, member) != values["from"]:
            raise RegistryConflict(
                f"{row.id!r} has {member} {getattr(row, member)} now, not {values['from']};"
                f" change {change.id} is stale: refuse it"
            )
    for member, values in change.changes.items():
        setattr(row, member, values["to"])
